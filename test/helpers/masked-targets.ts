// Ignored targets (−1) for the graphs' loss-mask tests (chat fine-tuning: only the answers carry loss).

/** Positions 0, 1 and every third from 1 carry no loss (−1): 6 of B·T = 10 count. */
export function maskTargets(targets: Int32Array): Int32Array {
  return targets.map((v, i) => (i < 2 || i % 3 === 1 ? -1 : v));
}

/** The mean of −log softmax[target] over the counted (≥ 0) targets, straight from the logits (n × V). */
export function maskedMeanNll(logits: ArrayLike<number>, targets: Int32Array, v: number): number {
  let sum = 0;
  let count = 0;
  targets.forEach((target, r) => {
    if (target < 0) return;
    let z = 0;
    for (let j = 0; j < v; j++) z += Math.exp(logits[r * v + j]!);
    sum += Math.log(z) - logits[r * v + target]!;
    count++;
  });
  return sum / count;
}
