// SPDX-License-Identifier: MIT OR Apache-2.0
// The time code both glass pages share: 32 bits of the wall clock in ms and
// an 8-bit checksum, as 40 cells of 16x16 px in two rows at the top left of
// a 640x360 picture; big enough to survive H.264 at any sane bitrate.
const CELL = 16, COLS = 20, BITS = 40;

function nowMs() { return performance.timeOrigin + performance.now(); }

function codeBits(ms) {
  const v = Math.floor(ms) >>> 0;
  const sum = ((v & 255) + ((v >>> 8) & 255) + ((v >>> 16) & 255) + (v >>> 24)) & 255;
  const bits = [];
  for (let i = 31; i >= 0; i--) bits.push((v >>> i) & 1);
  for (let i = 7; i >= 0; i--) bits.push((sum >>> i) & 1);
  return bits;
}

function paintCode(ctx, ms) {
  codeBits(ms).forEach((bit, i) => {
    ctx.fillStyle = bit ? "#ffffff" : "#000000";
    ctx.fillRect((i % COLS) * CELL, Math.floor(i / COLS) * CELL, CELL, CELL);
  });
}

// The painted value (ms, 32 bits) from the pixels of the top rows, or null
// when the checksum does not hold (a frame caught mid-change, or damaged).
function readCode(image) {
  const bits = [];
  for (let i = 0; i < BITS; i++) {
    const x = (i % COLS) * CELL + CELL / 2, y = Math.floor(i / COLS) * CELL + CELL / 2;
    let sum = 0;
    for (let dy = -3; dy <= 3; dy++) for (let dx = -3; dx <= 3; dx++) {
      const p = ((y + dy) * image.width + (x + dx)) * 4;
      sum += image.data[p] + image.data[p + 1] + image.data[p + 2];
    }
    bits.push(sum / 49 / 3 > 128 ? 1 : 0);
  }
  let v = 0, c = 0;
  for (let i = 0; i < 32; i++) v = (v * 2 + bits[i]) >>> 0;
  for (let i = 32; i < 40; i++) c = c * 2 + bits[i];
  const sum = ((v & 255) + ((v >>> 8) & 255) + ((v >>> 16) & 255) + (v >>> 24)) & 255;
  return sum === c ? v : null;
}

// How old a frame painted at 32-bit `painted` is at wall time `ms`.
function ageMs(painted, ms) {
  const now = Math.floor(ms) >>> 0;
  return ((now - painted) >>> 0) + (ms - Math.floor(ms));
}

// Non-trickle WHIP/WHEP: the offer goes out with every candidate in it.
function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 2000);
  });
}
