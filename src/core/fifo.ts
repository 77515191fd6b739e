/**
 * A first-in first-out queue on an array with a moving head: shift() is O(1)
 * (Array#shift moves every element). A shifted slot is cleared at once, so
 * the queue never keeps a consumed entry alive, and the consumed front is cut
 * off once it is most of the array and over 1,024 entries, so memory follows
 * what is queued, not everything ever pushed.
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  /** Entries queued. */
  get length(): number {
    return this.items.length - this.head;
  }

  push(v: T): void {
    this.items.push(v);
  }

  /** The oldest entry, left in place; undefined when empty. */
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** The newest entry; undefined when empty. */
  last(): T | undefined {
    return this.head < this.items.length ? this.items[this.items.length - 1] : undefined;
  }

  /** Removes and returns the oldest entry; undefined when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return v;
  }

  /** Drops every entry. */
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
