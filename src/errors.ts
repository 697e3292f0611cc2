// One error class for everything a user can get wrong (config, flags, files,
// checkpoints). The CLI prints its message as one line and exits non-zero.
export class AbruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AbruptError";
  }
}
