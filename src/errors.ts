// One error class for everything a user can get wrong (config, flags, files,
// checkpoints). The CLI prints its message as one line and exits non-zero.
export class AbruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AbruptError";
  }
}

/**
 * A failure of the compute device (webgpu: no adapter, device lost, a shader
 * that does not compile). The trainer adds the step and the last checkpoint.
 */
export class DeviceError extends AbruptError {
  constructor(message: string) {
    super(message);
    this.name = "DeviceError";
  }
}
