/**
 * Record values: random (incompressible) bytes, generated once into a pool the load generators
 * cycle through, so no value is generated or allocated per record while measuring.
 */
import crypto from 'node:crypto';

const poolValues = 4096;

export class PayloadPool {
  private readonly values: Buffer[] = [];
  private next = 0;

  constructor(readonly messageSize: number) {
    const slab = crypto.randomBytes(messageSize * poolValues);
    for (let i = 0; i < poolValues; i++) this.values.push(slab.subarray(i * messageSize, (i + 1) * messageSize));
  }

  take(): Buffer {
    const value = this.values[this.next]!;
    this.next = (this.next + 1) % poolValues;
    return value;
  }

  /** A fresh value carrying `stampMs` (a performance.now() reading) in its first 8 bytes. */
  stamped(stampMs: number): Buffer {
    const value = Buffer.allocUnsafe(this.messageSize);
    this.take().copy(value);
    value.writeDoubleLE(stampMs, 0);
    return value;
  }
}

/** The send time stamped by PayloadPool.stamped. */
export function stampOf(value: Buffer | null): number {
  return value === null || value.length < 8 ? NaN : value.readDoubleLE(0);
}
