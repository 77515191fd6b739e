/**
 * A list of received chunks read as one byte sequence, without concatenating
 * on every chunk (which is quadratic for parsers fed small pieces). Parsers
 * `push` what arrives, check `length`, and `read(n)` / `peek` exactly what they
 * need. `read` returns a slice (no copy) when the bytes lie in one chunk.
 */
export class ChunkList {
  private chunks: Buffer[] = [];
  private head = 0; // read offset into chunks[0]
  private total = 0;
  /** Chunks consumed to their end so far (in push order): a producer that reuses its buffers counts on it. */
  dropped = 0;

  get length(): number {
    return this.total;
  }

  /** Chunks held now. */
  get chunkCount(): number {
    return this.chunks.length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Byte at offset `i` from the read position (i < length). */
  byteAt(i: number): number {
    let off = this.head + i;
    for (const c of this.chunks) {
      if (off < c.length) return c[off] as number;
      off -= c.length;
    }
    throw new RangeError('ChunkList.byteAt out of range');
  }

  /** Copies `n` bytes at the read position into `out` without consuming them. */
  peekInto(out: Buffer, n: number): void {
    if (n > this.total) throw new RangeError('ChunkList.peekInto beyond length');
    let copied = 0;
    let off = this.head;
    for (const c of this.chunks) {
      if (copied === n) break;
      const take = Math.min(c.length - off, n - copied);
      c.copy(out, copied, off, off + take);
      copied += take;
      off = 0;
    }
  }

  /** True when the next `n` bytes (n <= length) lie in one chunk, so read(n) returns a view. */
  contiguous(n: number): boolean {
    const first = this.chunks[0];
    return first !== undefined && first.length - this.head >= n;
  }

  /** Consumes and returns `n` bytes (a slice when contiguous, else one copy). */
  read(n: number): Buffer {
    if (n > this.total) throw new RangeError('ChunkList.read beyond length');
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.peekInto(out, n);
    this.advance(n);
    return out;
  }

  /**
   * Consumes `n` bytes and returns them as views of the chunks they lie in,
   * in order, without copying (one view when they are contiguous).
   */
  readSegments(n: number): Buffer[] {
    if (n > this.total) throw new RangeError('ChunkList.readSegments beyond length');
    const out: Buffer[] = [];
    let left = n;
    let off = this.head;
    for (const c of this.chunks) {
      if (left === 0) break;
      const take = Math.min(c.length - off, left);
      out.push(c.subarray(off, off + take));
      left -= take;
      off = 0;
    }
    this.advance(n);
    return out;
  }

  /** Drops `n` bytes. */
  skip(n: number): void {
    if (n > this.total) throw new RangeError('ChunkList.skip beyond length');
    this.advance(n);
  }

  /** Consumes everything. */
  readAll(): Buffer {
    return this.read(this.total);
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.total = 0;
  }

  private advance(n: number): void {
    this.total -= n;
    while (n > 0) {
      const c = this.chunks[0] as Buffer;
      const avail = c.length - this.head;
      if (n < avail) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.dropped++;
      this.head = 0;
    }
    if (this.chunks.length > 0 && this.head === (this.chunks[0] as Buffer).length) {
      this.chunks.shift();
      this.dropped++;
      this.head = 0;
    }
  }
}
