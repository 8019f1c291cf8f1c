/**
 * A scratch configuration root (`ONESTOR_CONFIG_ROOT` or `loadConfig({ root })`) holding the given
 * files at their absolute paths, removed afterwards.
 *
 * @module
 */

/** Runs `fn` with a temporary root holding `files` (absolute path inside the root → content). */
export async function withRoot(
  files: Record<string, string>,
  fn: (root: string) => void | Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "onestor_config_root_" });
  try {
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${root}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${root}${path}`, text);
    }
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
