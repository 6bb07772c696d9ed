// The explorer verse in JavaScript: what the Python explorer's pipeline mode does in the morph role (and
// its baseline). It starts a generator instance, loads the verse's market into its memory, snapshots it,
// branches once per strategy, scores each strategy's trajectory in its own branch, merges by the best
// profit and returns the same JSON summary as components/examples/explorer.
//
// run(verseId, args): args is {"pipeline": {...}} as the host's presets make it (see
// host/verse/_pipeline.py): "baseline" (false, or {"link", "rule", "params"}), "branch", "generator",
// "strategies" ([{"rule", "params"}]), "steps", "fee_bps". Phases this example does not do (optimize,
// verify, attest) are refused with an err that says so.
//
// Build: worldrt component build components/examples/explorer-js -o explorer-js.wasm
// (npm ci, then componentize-js with --disable http fetch-event: the host gives components no wasi:http).
//
// WIT in JavaScript: records are objects with camelCase fields, u64/s64 are BigInt, option<T> is T or
// undefined, enums are their case names as strings, list<tuple<..>> is an array of arrays. A function
// returning result<T, provider-error> returns T or throws an error whose `payload` is the provider-error;
// run's err is whatever string it throws.

import { branch, execute, merge, snapshot, start, stop } from 'worldrt:verse/generator@0.2.0';
import { setLinkName } from 'worldrt:verse/lattice@0.2.0';
import { log } from 'worldrt:verse/log@0.2.0';
import { SOURCE } from './market.js';

const DEFAULT_BASELINE = { rule: 'ma_cross', params: { fast: 5, slow: 20 } };

class PipelineFailed {
  constructor(message) {
    this.message = message;
  }
}

// A JSON value as a Python literal (the instance runs Python).
function py(value) {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (Array.isArray(value)) return `[${value.map(py).join(', ')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

// Keys sorted at every level, as the Python explorer's json.dumps(..., sort_keys=True); a BigInt is
// written as its exact integer.
function sortedJson(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
    }
    return v;
  };
  const text = JSON.stringify(sort(value), (_, v) => (typeof v === 'bigint' ? `@bigint:${v}` : v));
  return text.replace(/"@bigint:(-?\d+)"/g, '$1');
}

class Pipeline {
  constructor(verseId, config) {
    this.verseId = verseId;
    this.config = config;
    this.steps = Number(config.steps ?? 252);
    this.feeBps = Number(config.fee_bps ?? 5.0);
    this.strategies = config.strategies || [];
    this.live = new Map(); // instance id -> the link it was started over
    this.link = 'default';
    this.calls = 0;
  }

  call(what, fn, request) {
    this.calls += 1;
    try {
      return fn(request);
    } catch (e) {
      const error = e && e.payload !== undefined ? e.payload : e;
      throw new PipelineFailed(`${what} failed: ${error.code}: ${error.message}`);
    }
  }

  use(link, interfaces) {
    setLinkName(link, interfaces);
    if (interfaces.includes('generator')) this.link = link;
  }

  execute(instanceId, code) {
    const result = this.call('generator.execute', execute, {
      instanceId, code, language: 'python', timeoutMs: 60000, env: [], inputJson: '', seed: 0n, argv: [],
      cwd: '', stdin: new Uint8Array(0), outputBytes: false,
    });
    if (result.error || result.exitCode) {
      throw new PipelineFailed(`code in ${instanceId} failed: ${result.error || result.stderr.trim()}`);
    }
    return result.valueJson ? JSON.parse(result.valueJson) : null;
  }

  start() {
    const instance = this.call('generator.start', start, {
      image: '', snapshotId: '', language: 'python', ttlS: 600, limits: undefined,
      metadata: [['verse-id', `${this.verseId}`], ['component', 'explorer-js']],
    });
    this.live.set(instance.instanceId, this.link);
    return instance.instanceId;
  }

  stop(instanceId) {
    this.call('generator.stop', stop, { instanceId });
    this.live.delete(instanceId);
  }

  loadMarket(instanceId) {
    this.execute(instanceId, `${SOURCE}\nPRICES = make_market(${this.verseId}, steps=${this.steps})\nNone`);
  }

  baseline() {
    const spec = this.config.baseline || {};
    const strategy = { rule: spec.rule ?? DEFAULT_BASELINE.rule, params: spec.params ?? DEFAULT_BASELINE.params };
    this.use(spec.link ?? 'default', ['generator']);
    const instanceId = this.start();
    this.loadMarket(instanceId);
    const result = this.execute(instanceId,
      `backtest(PRICES, ${py(strategy.rule)}, ${py(strategy.params)}, fee_bps=${py(this.feeBps)})`);
    this.stop(instanceId);
    this.use('default', ['generator']);
    log('info', `baseline ${strategy.rule}: ${result.profit}`);
    return { ...strategy, value: result.profit, trades: result.trades };
  }

  run() {
    for (const phase of ['optimize', 'verify', 'attest']) {
      if (this.config[phase]) {
        throw new PipelineFailed(`explorer-js does the morph role (baseline, branch, merge) only, not ${phase}: `
          + 'use the Python explorer for the full pipeline');
      }
    }
    const baseline = this.config.baseline !== false ? this.baseline() : null;
    const generating = (this.config.generator ?? true) !== false && this.strategies.length > 0;
    const branching = generating && (this.config.branch ?? true) !== false;
    if (!generating) {
      throw new PipelineFailed('explorer-js evaluates strategies in generator instances only: set "generator"');
    }
    let snap = null;
    let homes;
    const root = this.start();
    this.loadMarket(root);
    if (branching) {
      const ref = this.call('generator.snapshot', snapshot, { instanceId: root, ttlS: 0 });
      const branched = this.call('generator.branch', branch, {
        snapshotId: ref.snapshotId, count: this.strategies.length, ttlS: 600,
      });
      homes = branched.instances.map((inst) => inst.instanceId);
      for (const id of homes) this.live.set(id, this.link);
      if (homes.length !== this.strategies.length) {
        throw new PipelineFailed(`branch made ${homes.length} of ${this.strategies.length} instances: `
          + JSON.stringify(branched.errors.map((e) => e.message)));
      }
      snap = {
        snapshot_id: ref.snapshotId,
        kind: ref.kind.toUpperCase().replaceAll('-', '_'),
        size_bytes: Number(ref.sizeBytes),
      };
    } else {
      homes = this.strategies.map(() => root);
    }

    const candidates = this.strategies.map((strategy, index) => {
      const rule = strategy.rule;
      const params = { ...(strategy.params || {}) };
      const claim = this.execute(homes[index],
        `trajectory_claim(PRICES, ${py(rule)}, ${py(params)}, ${py(this.feeBps)})`);
      log('info', `${rule} ${JSON.stringify(params)}: ${claim.profit} (verified: true)`);
      return { instance_id: homes[index], rule, params, value: claim.profit, verified: true };
    });

    let winner = null;
    if (branching) {
      const survivor = this.call('generator.merge', merge, {
        instanceIds: candidates.map((c) => c.instance_id),
        oracle: { rule: 'max', scores: candidates.map((c) => [c.instance_id, Number(c.value)]), winnerId: '' },
      }).instanceId;
      for (const c of candidates) {
        if (c.instance_id !== survivor) this.live.delete(c.instance_id);
      }
      winner = candidates.find((c) => c.instance_id === survivor);
    } else {
      winner = candidates.reduce((best, c) => (c.value > best.value ? c : best));
    }
    for (const instanceId of [...this.live.keys()]) this.stop(instanceId);
    return {
      verse_id: this.verseId,
      mode: 'pipeline',
      baseline,
      snapshot: snap,
      candidates,
      winner: { rule: winner.rule, params: winner.params, value: winner.value, verified: winner.verified },
      attestation: null,
      wev: baseline ? Math.round((winner.value - baseline.value) * 1e6) / 1e6 : null,
      provider_calls: this.calls,
    };
  }

  cleanUp() {
    for (const [instanceId, link] of this.live) {
      setLinkName(link, ['generator']);
      try {
        stop({ instanceId });
      } catch (e) {
        const error = e && e.payload !== undefined ? e.payload : e;
        log('warn', `could not stop ${instanceId}: ${error.code}: ${error.message}`);
      }
    }
    this.live.clear();
  }
}

export function run(verseId, args) {
  let parsed;
  try {
    parsed = args.trim() ? JSON.parse(args) : {};
  } catch (e) {
    throw `args is not JSON: ${e.message}`;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw 'args must be a JSON object';
  if (!parsed.pipeline || typeof parsed.pipeline !== 'object') {
    throw 'explorer-js runs the pipeline mode only: args {"pipeline": {...}} (worldrt verse run ID --on morph)';
  }
  const pipeline = new Pipeline(verseId, parsed.pipeline);
  try {
    return sortedJson(pipeline.run());
  } catch (e) {
    if (!(e instanceof PipelineFailed)) throw e;
    log('error', e.message);
    pipeline.cleanUp();
    throw e.message;
  }
}
