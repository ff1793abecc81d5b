// SPDX-License-Identifier: MIT OR Apache-2.0
//
// What both pages share: a MoQ element pointed at ?url=RELAY&name=BROADCAST,
// and the console line tests/moq_browser.rs reads from Chromium's stderr,
// written twice a second.

/** Creates `tag` with the query's relay and broadcast, `attributes` and `child`. */
export function mount(tag, attributes, child) {
	const params = new URLSearchParams(location.search);
	const element = document.createElement(tag);
	element.setAttribute("url", params.get("url") ?? "");
	element.setAttribute("name", params.get("name") ?? "");
	for (const [name, value] of Object.entries(attributes)) {
		element.setAttribute(name, value);
	}
	element.appendChild(child);
	document.body.appendChild(element);
	return element;
}

/** Logs `line()` as `moq-web: ...` every 500 ms. */
export function report(line) {
	setInterval(() => console.log(`moq-web: ${line()}`), 500);
}
