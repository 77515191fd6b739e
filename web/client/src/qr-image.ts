/**
 * Reads a polytun:// link from a picture of its QR code (a screenshot, a
 * phone photo), entirely in the page: the image is drawn on a canvas and
 * the pixels decoded by @paulmillr/qr, loaded only when a file is chosen.
 * Nothing is uploaded anywhere.
 */

/** Largest side the decoder gets, pixels (a 12-megapixel photo is scaled down first). */
const MAX_SIDE = 1600;

/** The text of the QR code in `file`; rejects with a sentence when there is none. */
export async function readQrImage(file: File): Promise<string> {
  if (!file.type.startsWith('image/')) throw new Error(`${file.name} is not an image: choose a PNG or JPEG of the QR code`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name} cannot be read as an image`);
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (ctx === null) throw new Error('this browser cannot read images (no 2D canvas)');
  // A transparent PNG's background decodes as black: put it on white first.
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const { data } = ctx.getImageData(0, 0, width, height);
  const { default: decodeQR } = await import('@paulmillr/qr/decode.js');
  try {
    return decodeQR({ width, height, data });
  } catch {
    throw new Error(`no QR code found in ${file.name}: crop it to the code, or paste the link as text`);
  }
}
