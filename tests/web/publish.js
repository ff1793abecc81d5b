// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The MoQ project's own publisher (@moq/publish) on a bare page, for
// tests/moq_browser.rs: ?url=RELAY&name=BROADCAST publishes the camera
// (Chromium's fake device) and microphone. Twice a second it logs its
// connection, as one console line the test reads from Chromium's stderr:
//   moq-web: status S version V
import "@moq/publish/element";

const params = new URLSearchParams(location.search);
const publish = document.createElement("moq-publish");
publish.setAttribute("url", params.get("url") ?? "");
publish.setAttribute("name", params.get("name") ?? "");
publish.setAttribute("source", "camera");
const preview = document.createElement("video");
preview.muted = true;
preview.autoplay = true;
publish.appendChild(preview);
document.body.appendChild(publish);

setInterval(() => {
	const established = publish.connection.established.peek();
	console.log(
		`moq-web: status ${publish.connection.status.peek()} version ${established?.version ?? "-"}`,
	);
}, 500);
