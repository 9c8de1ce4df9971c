// GPT's causal attention over a KV cache, one query row at a time, in f32 SIMD (AssemblyScript). A module
// of its own beside kernels.ts, instantiated on the same WebAssembly memory (src/kernels/wasm-attention.ts).
// It must own no static data (no strings, no tables, no Mathf): a data segment would be written at the
// memory's low addresses, which belong to the kernels' module. Build flags: see package.json build:wasm.

/** e^x for x ≤ 0 (scores after subtracting their maximum), four lanes: x = k·ln2 + r, e^r by a degree-6
 * Taylor–Horner polynomial on |r| ≤ ln2/2 (relative error < 2e-7), 2^k built in the exponent bits. */
@inline function exp4(x: v128): v128 {
  x = f32x4.max(x, f32x4.splat(-87.0)); // below: e^x underflows f32 anyway (→ ≈ 0)
  const k = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.4426950408889634)));
  // r = x − k·ln2, ln2 in two parts so that k·ln2_hi is exact.
  let r = f32x4.sub(x, f32x4.mul(k, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(k, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.0 / 720.0);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 120.0));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 24.0));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 6.0));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(0.5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0));
  const pow2 = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(k), i32x4.splat(127)), 23);
  return f32x4.mul(p, pow2);
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/**
 * One query row q (C floats) attends to cache rows 0 … visible − 1 of kc and vc (rows of C floats), per
 * head of n = C / heads (n a multiple of 4): out_h = Σ_j softmax_j(q_h·k_jh·scale) v_jh. `scores` is
 * scratch of at least visible + 3 floats. Addresses are byte offsets into the memory.
 */
export function attendRow(q: usize, kc: usize, vc: usize, out: usize, scores: usize, visible: i32, c: i32, heads: i32, scale: f32): void {
  const n = c / heads;
  const row = <usize>c << 2;
  for (let h = 0; h < heads; h++) {
    const off = <usize>(h * n) << 2;
    const qh = q + off;
    // Scores q·k_j, and their maximum.
    let max: f32 = -3.4e38;
    let kp = kc + off;
    for (let j = 0; j < visible; j++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let d = 0;
      for (; d + 8 <= n; d += 8) {
        const o = <usize>d << 2;
        a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + o), v128.load(kp + o)));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(qh + o, 16), v128.load(kp + o, 16)));
      }
      if (d < n) a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>d << 2)), v128.load(kp + (<usize>d << 2))));
      const s = hsum(f32x4.add(a0, a1)) * scale;
      store<f32>(scores + (<usize>j << 2), s);
      if (s > max) max = s;
      kp += row;
    }
    // e^(s − max) in place, four at a time (the tail's extra lanes are scratch), and their sum.
    const m = f32x4.splat(max);
    let sum4 = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= visible; j += 4) {
      const p = scores + (<usize>j << 2);
      const e = exp4(f32x4.sub(v128.load(p), m));
      v128.store(p, e);
      sum4 = f32x4.add(sum4, e);
    }
    let sum = hsum(sum4);
    if (j < visible) {
      const p = scores + (<usize>j << 2);
      const e = exp4(f32x4.sub(v128.load(p), m));
      v128.store(p, e);
      for (let t = j; t < visible; t++) sum += load<f32>(scores + (<usize>t << 2));
    }
    // out_h = Σ_j e_j v_j / sum: 16 channels (one cache line of each v row) per sweep over the rows, in
    // four accumulators; then 4 at a time for the rest of the head.
    const oh = out + off;
    const inv = f32x4.splat(1 / sum);
    let d = 0;
    for (; d + 16 <= n; d += 16) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let vp = vc + off + (<usize>d << 2);
      for (let t = 0; t < visible; t++) {
        const w = f32x4.splat(load<f32>(scores + (<usize>t << 2)));
        a0 = f32x4.add(a0, f32x4.mul(w, v128.load(vp)));
        a1 = f32x4.add(a1, f32x4.mul(w, v128.load(vp, 16)));
        a2 = f32x4.add(a2, f32x4.mul(w, v128.load(vp, 32)));
        a3 = f32x4.add(a3, f32x4.mul(w, v128.load(vp, 48)));
        vp += row;
      }
      const o = oh + (<usize>d << 2);
      v128.store(o, f32x4.mul(a0, inv));
      v128.store(o, f32x4.mul(a1, inv), 16);
      v128.store(o, f32x4.mul(a2, inv), 32);
      v128.store(o, f32x4.mul(a3, inv), 48);
    }
    for (; d < n; d += 4) {
      let a0 = f32x4.splat(0);
      let vp = vc + off + (<usize>d << 2);
      for (let t = 0; t < visible; t++) {
        a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(scores + (<usize>t << 2))), v128.load(vp)));
        vp += row;
      }
      v128.store(oh + (<usize>d << 2), f32x4.mul(a0, inv));
    }
  }
}
