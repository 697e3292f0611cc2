// Parameter-group selectors (--freeze, --train-only, configs): the group
// names, the shorthands, and the embedding tensors' name prefixes embed.tok,
// embed.pos, embed.ln as the same groups as tok_emb, pos_emb, emb_ln.
import { test } from "node:test";
import assert from "node:assert/strict";
import { getKernels } from "../src/kernels/index.js";
import { Bert } from "../src/model/bert.js";
import { GPT_DEFAULT, Gpt, gptGroupNames } from "../src/model/gpt.js";
import { groupMatches, groupNames, isValidGroupSelector, paramSpecs } from "../src/model/params.js";

const cfg = { vocab: 2002, positions: 16, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const selected = (sel: string) => groupNames(cfg).filter((g) => groupMatches(g, sel));

test("embed.tok, embed.pos, embed.ln select the groups of the tensors they prefix", () => {
  for (const [prefix, group] of [["embed.tok", "tok_emb"], ["embed.pos", "pos_emb"], ["embed.ln", "emb_ln"]] as const) {
    assert.deepEqual(selected(prefix), [group]);
    assert.ok(isValidGroupSelector(cfg, prefix));
    assert.deepEqual([...new Set(paramSpecs(cfg).filter((s) => s.name.startsWith(prefix + ".")).map((s) => s.group))], [group]);
  }
  // the existing selectors are unchanged
  assert.deepEqual(selected("embeddings"), ["tok_emb", "pos_emb", "emb_ln"]);
  assert.deepEqual(selected("ln"), ["emb_ln", "blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2"]);
  assert.ok(!isValidGroupSelector(cfg, "embed") && !isValidGroupSelector(cfg, "embed.tok.weight"));
  const bert = new Bert(cfg, getKernels("ref"));
  bert.setFrozen(["embed.pos"]);
  assert.ok(bert.isFrozen("pos_emb") && !bert.isFrozen("tok_emb"));
  const gpt = new Gpt({ ...GPT_DEFAULT, block: 19, L: 1, d: 8, ff: 32 }, getKernels("ref"));
  gpt.setFrozen(["embed.tok"]);
  assert.ok(gpt.isFrozen("tok_emb") && gptGroupNames(gpt.cfg).filter((g) => gpt.isFrozen(g)).length === 1);
  // and by minGPT's names of its embeddings (transformer.wte, transformer.wpe)
  gpt.setFrozen(["wpe"]);
  assert.deepEqual(gptGroupNames(gpt.cfg).filter((g) => gpt.isFrozen(g)), ["pos_emb"]);
  gpt.setFrozen(["wte"]);
  assert.deepEqual(gptGroupNames(gpt.cfg).filter((g) => gpt.isFrozen(g)), ["tok_emb"]);
});
