// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The MoQ project's own publisher (@moq/publish) on a bare page, for
// tests/moq_browser.rs: ?url=RELAY&name=BROADCAST publishes the camera
// (Chromium's fake device) and microphone. It logs its connection:
//   moq-web: status S version V
import "@moq/publish/element";
import { mount, report } from "./page.js";

const preview = document.createElement("video");
preview.muted = true;
preview.autoplay = true;
const publish = mount("moq-publish", { source: "camera" }, preview);

report(() => {
	const established = publish.connection.established.peek();
	return `status ${publish.connection.status.peek()} version ${established?.version ?? "-"}`;
});
