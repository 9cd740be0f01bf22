/**
 * A minimal on-disk volume format for loader tests: `<dir>/data.f32` (little-endian float32, C-order) plus
 * `<dir>/shape.json`. It implements the loader's `VolumeReaderModule` contract (`openZarrVolume`) so that tests can
 * run the worker-thread loader without the Zarr store. Tests only; the runtime reads Zarr.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeRawVolume(dir: string, data: Float32Array, shape: readonly number[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "data.f32"), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  writeFileSync(join(dir, "shape.json"), JSON.stringify(shape));
}

export function openZarrVolume(
  dir: string,
): Promise<{ shape: number[]; readRegion(start: number[], size: number[]): Promise<Float32Array> }> {
  const shape = JSON.parse(readFileSync(join(dir, "shape.json"), "utf8")) as number[];
  const buf = readFileSync(join(dir, "data.f32"));
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return Promise.resolve({
    shape,
    readRegion(start: number[], size: number[]): Promise<Float32Array> {
      const out = new Float32Array(size.reduce((a, b) => a * b, 1));
      const idx = size.map(() => 0);
      for (let o = 0; o < out.length; o++) {
        let src = 0;
        let inside = true;
        for (let d = 0; d < size.length; d++) {
          const p = start[d]! + idx[d]!;
          if (p < 0 || p >= shape[d]!) inside = false;
          src += p * strides[d]!;
        }
        if (inside) out[o] = data[src]!;
        for (let d = size.length - 1; d >= 0; d--) {
          idx[d]! += 1;
          if (idx[d]! < size[d]!) break;
          idx[d] = 0;
        }
      }
      return Promise.resolve(out);
    },
  });
}
