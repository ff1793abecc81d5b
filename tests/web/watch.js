// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The MoQ project's own player (@moq/watch) on a bare page, for
// tests/moq_browser.rs: ?url=RELAY&name=BROADCAST. It logs what the player
// decoded:
//   moq-web: frames N videoBytes N audioBytes N audioMs N status S version V
// (frames: decoded by WebCodecs; audioMs: how far audio has played, which
// only moves on with decoded samples).
import "@moq/watch/element";
import { mount, report } from "./page.js";

const canvas = document.createElement("canvas");
// A headless tab counts as hidden; download video all the same.
const watch = mount("moq-watch", { visible: "always" }, canvas);

report(() => {
	const video = watch.video.out.stats.peek();
	const audio = watch.audio.out.stats.peek();
	const played = watch.audio.out.timestamp.peek();
	const established = watch.connection.established.peek();
	return (
		`frames ${video?.frameCount ?? 0} videoBytes ${video?.bytesReceived ?? 0} ` +
		`audioBytes ${audio?.bytesReceived ?? 0} audioMs ${Math.round(played ?? 0)} ` +
		`status ${watch.connection.status.peek()} version ${established?.version ?? "-"} ` +
		`canvas ${canvas.width}x${canvas.height}`
	);
});
