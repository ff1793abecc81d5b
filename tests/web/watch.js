// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The MoQ project's own player (@moq/watch) on a bare page, for
// tests/moq_browser.rs: ?url=RELAY&name=BROADCAST. Twice a second it logs
// what the player decoded, as one console line the test reads from
// Chromium's stderr:
//   moq-web: frames N videoBytes N audioBytes N audioMs N status S version V
// (frames: decoded by WebCodecs; audioMs: how far audio has played, which
// only moves on with decoded samples).
import "@moq/watch/element";

const params = new URLSearchParams(location.search);
const watch = document.createElement("moq-watch");
watch.setAttribute("url", params.get("url") ?? "");
watch.setAttribute("name", params.get("name") ?? "");
// A headless tab counts as hidden; download video all the same.
watch.setAttribute("visible", "always");
const canvas = document.createElement("canvas");
watch.appendChild(canvas);
document.body.appendChild(watch);

setInterval(() => {
	const video = watch.video.out.stats.peek();
	const audio = watch.audio.out.stats.peek();
	const played = watch.audio.out.timestamp.peek();
	const established = watch.connection.established.peek();
	console.log(
		`moq-web: frames ${video?.frameCount ?? 0} videoBytes ${video?.bytesReceived ?? 0} ` +
			`audioBytes ${audio?.bytesReceived ?? 0} audioMs ${Math.round(played ?? 0)} status ${watch.connection.status.peek()} ` +
			`version ${established?.version ?? "-"} canvas ${canvas.width}x${canvas.height}`,
	);
}, 500);
