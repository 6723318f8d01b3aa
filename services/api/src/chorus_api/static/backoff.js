// Full-jitter exponential backoff, as the Python clients use: random(0, min(cap, base·2^n)).

export class Backoff {
  constructor({ base = 250, cap = 5000 } = {}) {
    this.base = base;
    this.cap = cap;
    this.attempt = 0;
  }

  /** Milliseconds to wait before the next attempt (and count it). */
  next() {
    const ceiling = Math.min(this.cap, this.base * 2 ** this.attempt);
    this.attempt += 1;
    return Math.random() * ceiling;
  }

  /** A connection worked: start again from the base delay. */
  reset() {
    this.attempt = 0;
  }
}
