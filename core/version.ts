/** onestor's version, printed by `--version` and recorded by `install`. */
export const VERSION = "0.1.0";
