/**
 * Snapshots of persistent images (spec §7.7): `<SOURCE>.snap/<id>` files, independent full copies
 * made by the TM when a VM using the image snapshots its disk.
 *
 * - delete: removes the snapshot file;
 * - revert: copies the snapshot over the image (under a temporary name, then renamed); with a
 *   datastore TM_MAD of qcow2, recreates the highest-numbered snapshot as an overlay of the target
 *   instead, as upstream;
 * - flatten: makes the snapshot the image (qcow2: converted into a standalone file; other formats:
 *   moved) and removes every snapshot.
 * Whenever the image's content changes, everything derived from it goes: the `.md5sum` side file
 * (upstream removed a wrong path after delete and flatten, so replicas kept serving the old
 * content) and cached copies on replicas (through the cache's invalidation hook).
 *
 * @module
 */

import { invalidateImage } from "../cache/invalidate.ts";
import { convertScript, createScript } from "../image/qemu_img.ts";
import { logInfo } from "../one/log.ts";
import { confined } from "../remote/confine.ts";
import { sh, type ShellScript } from "../remote/shell.ts";
import { transferTimeoutMs } from "../runtime.ts";
import { snapshotId } from "../validate.ts";
import { dsConfinement, type DsEnv, workHost } from "./env.ts";
import { checkImageSource, tempNameFor } from "./paths.ts";

/** The image and snapshot an action works on. */
export interface SnapshotTarget {
  /** The image file. */
  source: string;
  /** `<SOURCE>.snap`. */
  snapDir: string;
  /** `<SOURCE>.snap/<id>`. */
  snapPath: string;
  /** TARGET_SNAPSHOT. */
  id: number;
}

/** Reads and checks SOURCE and TARGET_SNAPSHOT. */
export function snapshotTarget(env: DsEnv): SnapshotTarget {
  const a = env.action;
  const source = checkImageSource(a.imageSource, a.dsBasePath);
  const id = snapshotId(a.get("IMAGE/TARGET_SNAPSHOT"), "IMAGE/TARGET_SNAPSHOT");
  return { source, snapDir: `${source}.snap`, snapPath: `${source}.snap/${id}`, id };
}

function missing(t: SnapshotTarget): ShellScript {
  return sh`[ -f ${t.snapPath} ] || { echo ${`Snapshot ${t.id} of ${t.source} does not exist`} >&2; exit 1; }`;
}

/** Runs a script that changes the image, its side files and its snapshots, confined to BASE_PATH. */
async function runOn(env: DsEnv, t: SnapshotTarget, script: ShellScript, what: string): Promise<void> {
  const host = await workHost(env.action.bridgeList, env.id);
  const targets = {
    write: [t.source, t.snapDir, tempNameFor(t.source)],
    remove: [t.snapPath, t.snapDir, `${t.source}.md5sum`],
  };
  await env.runner.run(
    host,
    confined(
      dsConfinement(env.action),
      host,
      targets,
      sh`set -e
${script}`,
    ),
    { timeoutMs: transferTimeoutMs(), what },
  );
}

/** Runs `snap_delete`. */
export async function deleteSnapshot(env: DsEnv): Promise<void> {
  const t = snapshotTarget(env);
  logInfo(`Deleting snapshot ${t.snapPath}`);
  await runOn(
    env,
    t,
    sh`rm -f -- ${t.snapPath} ${`${t.source}.md5sum`}`,
    `Error deleting snapshot ${t.snapPath}`,
  );
  // The snapshots travel with the image into replica caches.
  await invalidateImage(t.source, "other");
}

/** Runs `snap_revert`. */
export async function revertSnapshot(env: DsEnv): Promise<void> {
  const t = snapshotTarget(env);
  const sparse = env.action.dsTemplate("SPARSE").trim().toLowerCase() !== "no";
  let script: ShellScript;
  if (env.action.tmMad === "qcow2") {
    // As upstream's qcow2 layout: the highest-numbered snapshot is the active overlay.
    const overlay = `${t.snapDir}/.active.onestor-tmp`;
    script = sh`${missing(t)}
active=$(ls -- ${t.snapDir} | grep -E '^[0-9]+$' | sort -n | tail -n 1)
if [ "$active" = ${String(t.id)} ]; then
  echo ${`Snapshot ${t.id} is the active snapshot of ${t.source}: nothing to revert to`} >&2; exit 1
fi
rm -f -- ${overlay}
${createScript({ path: overlay, format: "qcow2", backing: t.snapPath, backingFormat: "qcow2" })}
mv -f -- ${overlay} ${t.snapDir}/"$active"`;
  } else {
    const tmp = tempNameFor(t.source);
    script = sh`${missing(t)}
rm -f -- ${tmp}
cp -f --sparse=${sparse ? "always" : "never"} -- ${t.snapPath} ${tmp}
mv -f -- ${tmp} ${t.source}`;
  }
  logInfo(`Reverting ${t.source} to snapshot ${t.id}`);
  await runOn(
    env,
    t,
    sh`${script}
rm -f -- ${`${t.source}.md5sum`}`,
    `Error reverting ${t.source} to snapshot ${t.id}`,
  );
  await invalidateImage(t.source, "snap_revert");
}

/** Runs `snap_flatten`. */
export async function flattenSnapshot(env: DsEnv): Promise<void> {
  const t = snapshotTarget(env);
  const sparse = env.action.dsTemplate("SPARSE").trim().toLowerCase() !== "no";
  const tmp = tempNameFor(t.source);
  const replace = env.action.imageFormat.trim() === "qcow2"
    ? sh`rm -f -- ${tmp}
${
      convertScript({
        src: t.snapPath,
        dst: tmp,
        format: "qcow2",
        sparse,
        qcow2Options: env.config.qcow2Options,
      })
    }
mv -f -- ${tmp} ${t.source}`
    : sh`mv -f -- ${t.snapPath} ${t.source}`;
  logInfo(`Flattening ${t.source} to snapshot ${t.id}`);
  // A retry after a completed flatten finds neither the snapshot nor the folder: nothing to do.
  await runOn(
    env,
    t,
    sh`if [ ! -e ${t.snapPath} ] && [ ! -e ${t.snapDir} ]; then
  echo ${`No snapshots left for ${t.source}: already flattened`} >&2
else
${missing(t)}
${replace}
rm -rf -- ${t.snapDir}
fi
rm -f -- ${`${t.source}.md5sum`}`,
    `Error flattening ${t.source} to snapshot ${t.id}`,
  );
  await invalidateImage(t.source, "snap_flatten");
}
