// Stop strings over streamed text: text is released as soon as it cannot be the start of a stop string;
// a possible start is held back until the next piece decides it.

export class StopMatcher {
  private readonly stops: readonly string[];
  private pending = '';
  /** The stop string that matched, once one has. */
  matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Adds text; returns what can be released (the text before a stop string once one matches). */
  push(text: string): string {
    if (this.matched !== undefined) return '';
    if (this.stops.length === 0) return text;
    this.pending += text;
    let first = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) {
        first = i;
        this.matched = s;
      }
    }
    if (first >= 0) {
      const out = this.pending.slice(0, first);
      this.pending = '';
      return out;
    }
    const hold = this.heldLength();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** At the end of generation: whatever was held back (it never became a stop string). */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }

  /** The longest suffix of the pending text that is a proper prefix of some stop string. */
  private heldLength(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > best; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
