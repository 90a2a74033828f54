// Reader for confab's frame-id barcode (a port of src/media/barcode.rs `read_with`):
// 4 rows x 27 cells over the top fifth of the picture, first cell of each row a
// white/black reference, 104 data bits = frame id (32) | capture µs (56) | CRC-16.
"use strict";

const ConfabBarcode = (() => {
  const ROWS = 4;
  const COLS = 27;
  const ROW_DIV = 20;
  const MIN_CONTRAST = 60;

  function crc16(bytes, n) {
    let crc = 0xffff;
    for (let i = 0; i < n; i++) {
      crc ^= bytes[i] << 8;
      for (let b = 0; b < 8; b++) {
        crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
    }
    return crc;
  }

  function bandHeight(height) {
    return Math.floor((ROWS * height) / ROW_DIV);
  }

  // `rgba`: ImageData.data of the top band (at least bandHeight(height) rows) of a
  // `width` x `height` picture. Returns {frameId, captureUs} or null.
  function readRgba(rgba, width, height) {
    if (width < COLS * 2 || height < ROW_DIV) return null;
    if (rgba.length < bandHeight(height) * width * 4) return null;
    const cellX = (c) => Math.floor((c * width) / COLS);
    const cellY = (r) => Math.floor((r * height) / ROW_DIV);
    const luma = (x, y) => {
      const p = (y * width + x) * 4;
      return (77 * rgba[p] + 150 * rgba[p + 1] + 29 * rgba[p + 2]) >> 8;
    };
    const cellMean = (r, c) => {
      const x0 = cellX(c), x1 = cellX(c + 1), y0 = cellY(r), y1 = cellY(r + 1);
      const qx = Math.floor((x1 - x0) / 4), qy = Math.floor((y1 - y0) / 4);
      const xs = x0 + qx, xe = Math.max(x1 - qx, xs + 1);
      const ys = y0 + qy, ye = Math.max(y1 - qy, ys + 1);
      let sum = 0;
      for (let y = ys; y < ye; y++) for (let x = xs; x < xe; x++) sum += luma(x, y);
      return sum / ((xe - xs) * (ye - ys));
    };
    let white = 0, black = 0;
    for (let r = 0; r < ROWS; r++) {
      const m = cellMean(r, 0) / (ROWS / 2);
      if (r % 2 === 0) white += m; else black += m;
    }
    if (white - black < MIN_CONTRAST) return null;
    const threshold = (white + black) / 2;
    const bytes = new Uint8Array(13);
    for (let r = 0; r < ROWS; r++) {
      for (let c = 1; c < COLS; c++) {
        if (cellMean(r, c) > threshold) {
          const i = r * (COLS - 1) + c - 1;
          bytes[i >> 3] |= 1 << (7 - (i % 8));
        }
      }
    }
    if (crc16(bytes, 11) !== ((bytes[11] << 8) | bytes[12])) return null;
    const frameId = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
    let captureUs = 0;
    for (let i = 4; i < 11; i++) captureUs = captureUs * 256 + bytes[i];
    return { frameId, captureUs };
  }

  return { readRgba, bandHeight };
})();
