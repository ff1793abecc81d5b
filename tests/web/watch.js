// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The MoQ project's own player (@moq/watch) on a bare page, for
// tests/moq_browser.rs: ?url=RELAY&name=BROADCAST. It logs what the player
// decoded:
//   moq-web: frames N videoBytes N audioBytes N audioMs N status S version V
// (frames: decoded by WebCodecs; audioMs: how far audio has played, which
// only moves on with decoded samples), then the video track the player
// picked and how many times it changed. With ?steer=1 the page points the
// player's rendition target at another rendition after 60 frames, and back
// at the one it chose first once 60 frames of the other played.
import "@moq/watch/element";
import { mount, report } from "./page.js";

const canvas = document.createElement("canvas");
// A headless tab counts as hidden; download video all the same.
const watch = mount("moq-watch", { visible: "always" }, canvas);

const steer = new URLSearchParams(location.search).get("steer") === "1";
const tracks = [];
let phase = 0;
let mark = 0;

/** Moves the player's target along: after 60 frames to a rendition other
 * than the one it chose, and back once 60 frames of that one played. */
function steering(frames) {
	const first = tracks[0];
	if (phase === 0 && frames >= 60 && first) {
		const other = Object.keys(watch.video.source.out.available.peek()).find((t) => t !== first);
		if (!other) return;
		watch.controls.target.set({ name: other });
		[phase, mark] = [1, tracks.length];
	} else if (phase === 1 && tracks.length > mark) {
		[phase, mark] = [2, frames];
	} else if (phase === 2 && frames >= mark + 60) {
		watch.controls.target.set({ name: first });
		phase = 3;
	}
}

report(() => {
	const video = watch.video.out.stats.peek();
	const track = watch.video.source.out.track.peek();
	if (track && tracks[tracks.length - 1] !== track) tracks.push(track);
	if (steer) steering(video?.frameCount ?? 0);
	const audio = watch.audio.out.stats.peek();
	const played = watch.audio.out.timestamp.peek();
	const established = watch.connection.established.peek();
	return (
		`frames ${video?.frameCount ?? 0} videoBytes ${video?.bytesReceived ?? 0} ` +
		`audioBytes ${audio?.bytesReceived ?? 0} audioMs ${Math.round(played ?? 0)} ` +
		`status ${watch.connection.status.peek()} version ${established?.version ?? "-"} ` +
		`canvas ${canvas.width}x${canvas.height} track ${track ?? "-"} ` +
		`switches ${Math.max(tracks.length - 1, 0)}`
	);
});
