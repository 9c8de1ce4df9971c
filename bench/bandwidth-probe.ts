// The machine's read bandwidth right now, with N threads, in its own process: the benchmark runs it next
// to each configuration so that a figure's % of the floor compares it with the bandwidth of its moment
// (two-thread figures on this machine move by ±30 % with the load of the other tenants).
//   node dist/bench/bandwidth-probe.js --threads 2   → one JSON line {"threads":2,"bytesPerSecond":…}
import { parseArgs } from 'node:util';
import { WasmKernels } from '../src/kernels/wasm-kernels.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '1' } } });
const threads = Number(values.threads);
const backend = await WasmKernels.create({ threads });
const bytesPerSecond = backend.measureReadBandwidth(256 * 2 ** 20, 5);
await backend.close();
process.stdout.write(JSON.stringify({ threads, bytesPerSecond }) + '\n');
