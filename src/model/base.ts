// What every model file shares, written once: the flat parameters and
// gradients on a backend, parameter access by name, freezing by group
// selectors, and the hook API over the model's hook table (hooks.ts). A model
// (bert.ts, gpt.ts) extends it with its config, its named views, its forward
// and backward; the forward pass sets `acts`.

import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";
import type { HookFn, HookTable } from "./hooks.js";
import type { TensorSpec } from "./params.js";

export abstract class ModelBase<Acts, Buf> {
  /** the backend everything of this model lives on */
  readonly kernels: Kernels<Buf>;
  /** the parameter layout (names as in the checkpoints, shapes, offsets, freezing groups) */
  readonly specs: TensorSpec[];
  /** all parameters, laid out by `specs` */
  readonly params: Buf;
  /** gradients, same layout */
  readonly grads: Buf;
  protected readonly hooks: HookTable<Acts, Buf>;
  /** the activations of the last forward pass */
  protected acts: Acts | null = null;
  protected frozen = new Set<string>();
  private readonly byName: Map<string, TensorSpec>;
  private readonly groups: string[];

  protected constructor(
    kernels: Kernels<Buf>, specs: TensorSpec[], hooks: HookTable<Acts, Buf>,
    /** whether a freezing selector covers a group (params.ts groupMatches, or the family's) */
    private readonly matches: (group: string, selector: string) => boolean,
    /** where the parameter names are listed, for the unknown-name error */
    private readonly specsWhere: string,
  ) {
    this.kernels = kernels;
    this.specs = specs;
    this.byName = new Map(specs.map((s) => [s.name, s]));
    this.groups = [...new Set(specs.map((s) => s.group))];
    const last = specs[specs.length - 1]!;
    this.params = kernels.alloc(last.offset + last.size);
    this.grads = kernels.alloc(last.offset + last.size);
    this.hooks = hooks;
  }

  /** Number of parameters. */
  get size(): number {
    const last = this.specs[this.specs.length - 1]!;
    return last.offset + last.size;
  }

  // ---------------------------------------------------------------- hooks

  /** All hook names of this model, in forward order. */
  hookNames(): string[] {
    return [...this.hooks.names];
  }

  hookShape(name: string, B: number, T: number): number[] {
    return this.hooks.shape(name, B, T);
  }

  /**
   * Calls fn on the activation right after it is computed; fn may change it
   * in place. On a device backend (webgpu) fn gets a host copy, and the pass
   * must be run with `run` (asynchronous). Returns the function that removes it.
   */
  addHook(name: string, fn: HookFn): () => void {
    return this.hooks.add(name, fn);
  }

  clearHooks(): void {
    this.hooks.clear();
  }

  /** The activation of the last forward pass (a view: copy it to keep it). */
  act(name: string): Buf {
    this.hooks.check(name);
    const a = this.acts;
    if (!a) throw new AbruptError("no forward pass has run yet");
    return this.hooks.buffer(a, name);
  }

  /** A host copy of an activation of the last forward pass (any backend; see act). */
  async actHost(name: string): Promise<Float32Array> {
    return this.hostCopy(this.act(name));
  }

  // ----------------------------------------------------------- parameters

  private spec(name: string): TensorSpec {
    const s = this.byName.get(name);
    if (!s) throw new AbruptError(`unknown parameter "${name}" (parameters: ${[...this.byName.keys()].slice(0, 4).join(", ")}, …; see ${this.specsWhere})`);
    return s;
  }

  /** A host copy of one parameter tensor by its name (any backend), e.g. `await model.getParam("embed.pos.weight")`. */
  async getParam(name: string): Promise<Float32Array> {
    const s = this.spec(name);
    return this.hostCopy(this.kernels.view(this.params, s.offset, s.size));
  }

  /** Sets one parameter tensor by its name from a host array of its size. */
  setParam(name: string, data: Float32Array): void {
    const s = this.spec(name);
    if (data.length !== s.size) throw new Error(`setParam: ${data.length} values for ${name}, which has ${s.size}`);
    this.kernels.upload(this.kernels.view(this.params, s.offset, s.size), data);
  }

  /** A host copy of any tensor of this model (a Float32Array slice on host backends). */
  async hostCopy(t: Buf): Promise<Float32Array> {
    return this.kernels.host ? (t as Float32Array).slice() : await this.kernels.download(t);
  }

  /** A host copy of all parameters, laid out by `specs`. */
  async paramsHost(): Promise<Float32Array> {
    return this.hostCopy(this.params);
  }

  /** Sets all parameters from a host array laid out by `specs`. */
  setParams(params: Float32Array): void {
    if (params.length !== this.size) throw new Error(`setParams: ${params.length} values, the model has ${this.size}`);
    this.kernels.upload(this.params, params);
  }

  zeroGrad(): void {
    this.kernels.zero(this.grads);
  }

  // -------------------------------------------------------------- freezing

  /** Freezes parameter groups by selectors (exact group names, attn, mlp, ln, embeddings, blocks.N); frozen groups get no gradient. */
  setFrozen(selectors: string[]): void {
    const frozen = new Set<string>();
    for (const sel of selectors) {
      if (!this.groups.some((g) => this.matches(g, sel))) {
        throw new AbruptError(`unknown parameter group "${sel}" (groups: ${this.groups.join(", ")}, or attn, mlp, ln, embeddings, blocks.N)`);
      }
      for (const g of this.groups) if (this.matches(g, sel)) frozen.add(g);
    }
    this.frozen = frozen;
  }

  isFrozen(group: string): boolean {
    return this.frozen.has(group);
  }

  frozenGroups(): string[] {
    return [...this.frozen];
  }

  /** The freezing groups of this model's parameters, in layout order. */
  groupNames(): string[] {
    return [...this.groups];
  }
}
