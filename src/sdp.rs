// SPDX-License-Identifier: MIT OR Apache-2.0

//! What the serve mode reads from and fixes in a WebRTC peer's SDP offer
//! before gst-plugins-rs's WHIP/WHEP elements see it. Plain text in, plain
//! text out, so it is tested without a peer.

use crate::presets::Video;

/// One payload type of an `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Payload {
    pt: String,
    encoding: String,
    /// For `rtx`: the payload type it repairs (`apt=`).
    apt: Option<String>,
}

/// The payloads of the `m=` section starting at `lines[start]`, in the
/// offer's order (the peer's preference).
fn payloads(lines: &[&str], start: usize) -> Vec<Payload> {
    let mut fields = lines[start].split_whitespace().skip(3);
    let order: Vec<String> = fields.by_ref().map(str::to_owned).collect();
    let section = section_lines(lines, start);
    order
        .into_iter()
        .map(|pt| {
            let encoding = attribute(section, "rtpmap", &pt)
                .and_then(|v| v.split('/').next())
                .unwrap_or_default()
                .to_ascii_uppercase();
            let apt = attribute(section, "fmtp", &pt).and_then(|v| {
                v.split(';')
                    .find_map(|kv| kv.trim().strip_prefix("apt="))
                    .map(str::to_owned)
            });
            Payload { pt, encoding, apt }
        })
        .collect()
}

/// The lines of the media section starting at `start` (its `m=` line
/// included), up to the next `m=` line.
fn section_lines<'a>(lines: &'a [&'a str], start: usize) -> &'a [&'a str] {
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("m="))
        .map_or(lines.len(), |i| start + 1 + i);
    &lines[start..end]
}

/// The value of `a=<name>:<pt> <value>` in a section.
fn attribute<'a>(section: &[&'a str], name: &str, pt: &str) -> Option<&'a str> {
    let prefix = format!("a={name}:{pt} ");
    section
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
}

fn split_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().map(|l| l.trim_end_matches('\r')).collect()
}

fn join_lines(lines: &[String]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

/// The first video codec of the offer (in the peer's order of preference)
/// that the gateway carries without re-encoding.
pub fn preferred_video(offer: &str) -> Option<Video> {
    let lines = split_lines(offer);
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m=video"))
        .flat_map(|(i, _)| payloads(&lines, i))
        .find_map(|p| Video::parse(&p.encoding))
}

/// Whether the offer has a media section of `kind` (`audio`, `video`).
pub fn has_media(offer: &str, kind: &str) -> bool {
    let prefix = format!("m={kind} ");
    split_lines(offer).iter().any(|l| l.starts_with(&prefix))
}

/// Fixes what gst-plugins-rs 0.15 cannot take from browsers and GStreamer
/// peers:
/// - RED, ULPFEC and FlexFEC payloads (and their RTX) are removed: offered
///   by Chromium for VP8, they make whipserversrc fail;
/// - H.264 formats without `level-asymmetry-allowed` get it: whepserversink
///   otherwise insists on the offer's exact profile-level-id (whepclientsrc
///   offers only 42e016), which an x264 stream (42c0xx, the same
///   constrained-baseline profile) never matches. Decoders take any level.
pub fn fix_offer(offer: &str) -> String {
    rewrite_sections(offer, "m=", |section, all| {
        let dropped = fec_payloads(all);
        let h264: Vec<&str> = all
            .iter()
            .filter(|p| p.encoding == "H264")
            .map(|p| p.pt.as_str())
            .collect();
        // A section of nothing but FEC stays as it is: emptied, it would
        // be rejected.
        let lines = if dropped.is_empty() || dropped.len() == all.len() {
            section.iter().map(|l| (*l).to_owned()).collect()
        } else {
            let listed: Vec<&str> = all
                .iter()
                .map(|p| p.pt.as_str())
                .filter(|pt| !dropped.contains(pt))
                .collect();
            with_payloads(section, &listed, |pt| dropped.contains(&pt))
        };
        lines
            .into_iter()
            .map(|line| with_level_asymmetry(line, &h264))
            .collect()
    })
}

/// Why webrtcbin could not take what the peer would send, if it could not:
/// a section the peer sends on without naming its SSRCs (`a=ssrc`) that is
/// not the first of its BUNDLE group.
///
/// webrtcbin (1.22) routes RTP from an SSRC the SDP does not name to the
/// section its BUNDLE group lists first. A browser that publishes with
/// simulcast (`sendEncodings` with RIDs) names no video SSRCs; with its
/// audio first (Chromium's order when the audio track is added first),
/// webrtcbin took the video for a second audio stream, which whipserversrc
/// leaves unlinked, and the session died half a second after its `201`
/// ("Internal data stream error"). The group's order cannot be changed to
/// suit webrtcbin: it also names the transport the peer keeps (moving it,
/// ICE never connected). With the unnamed section first it works: the
/// browser sends its first encoding, to the right section.
pub fn unroutable(offer: &str) -> Option<String> {
    let lines = split_lines(offer);
    let group = bundle_group(&lines).unwrap_or_default();
    let mut unnamed = Vec::new();
    let mut first = None;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("m=") {
            continue;
        }
        let section = section_lines(&lines, i);
        let mid = section_mid(section);
        let bundled = mid.is_some_and(|m| group.contains(&m));
        if !bundled || section[0].split_whitespace().nth(1) == Some("0") {
            continue;
        }
        let sends = !section
            .iter()
            .any(|l| matches!(*l, "a=recvonly" | "a=inactive"));
        let named = section.iter().any(|l| l.starts_with("a=ssrc:"));
        let kind = section[0]["m=".len()..]
            .split_whitespace()
            .next()
            .unwrap_or("media");
        if sends && !named {
            unnamed.push((mid.unwrap_or_default(), kind));
        }
        if group.first().copied() == mid {
            first = Some(kind);
        }
    }
    let (mid, kind) = *unnamed.iter().find(|(mid, _)| group.first() != Some(mid))?;
    let first = first.unwrap_or("media");
    Some(format!(
        "the offer's {kind} (mid {mid}) names no SSRCs (simulcast with RIDs?) and is not \
         the first section of its BUNDLE group: GStreamer 1.22's webrtcbin would take its \
         RTP for the {first}'s and the session would fail. Offer one encoding, or put the \
         {kind} first"
    ))
}

/// A media section's `a=mid:`.
fn section_mid<'a>(section: &[&'a str]) -> Option<&'a str> {
    section
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(str::trim)
}

/// The mids of the `a=group:BUNDLE` line, in its order.
fn bundle_group<'a>(lines: &[&'a str]) -> Option<Vec<&'a str>> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("a=group:BUNDLE "))
        .map(|mids| mids.split_whitespace().collect())
}

/// The RED, ULPFEC and FlexFEC payload types of a section, and the RTX
/// payload types that repair them.
fn fec_payloads(all: &[Payload]) -> Vec<&str> {
    let is_fec = |p: &Payload| matches!(p.encoding.as_str(), "RED" | "ULPFEC" | "FLEXFEC-03");
    let fec: Vec<&str> = all
        .iter()
        .filter(|p| is_fec(p))
        .map(|p| p.pt.as_str())
        .collect();
    all.iter()
        .filter(|p| is_fec(p) || p.apt.as_deref().is_some_and(|apt| fec.contains(&apt)))
        .map(|p| p.pt.as_str())
        .collect()
}

/// An H.264 `a=fmtp` line (of one of the `h264` payload types) with
/// `level-asymmetry-allowed=1` added where it lacks it.
fn with_level_asymmetry(line: String, h264: &[&str]) -> String {
    let about_h264 = line
        .strip_prefix("a=fmtp:")
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|pt| h264.contains(&pt));
    if about_h264 && !line.contains("level-asymmetry-allowed") {
        format!("{line};level-asymmetry-allowed=1")
    } else {
        line
    }
}

/// The SDP with each media section whose `m=` line starts with `prefix`
/// replaced by what `rewrite` makes of it (given its lines and payload
/// types); every other line as it was.
fn rewrite_sections(
    sdp: &str,
    prefix: &str,
    mut rewrite: impl FnMut(&[&str], &[Payload]) -> Vec<String>,
) -> String {
    let lines = split_lines(sdp);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with(prefix) {
            out.push(lines[i].to_owned());
            i += 1;
            continue;
        }
        let section = section_lines(&lines, i);
        out.extend(rewrite(section, &payloads(&lines, i)));
        i += section.len();
    }
    join_lines(&out)
}

/// A media section whose `m=` line lists `listed` as its payload types,
/// without the `rtpmap`/`fmtp`/`rtcp-fb` lines whose payload type (or `*`)
/// `drop` says to leave out.
fn with_payloads(section: &[&str], listed: &[&str], drop: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::with_capacity(section.len());
    for (n, line) in section.iter().enumerate() {
        if n == 0 {
            let head = line.split_whitespace().take(3);
            out.push(
                head.chain(listed.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            continue;
        }
        let about = ["rtpmap", "fmtp", "rtcp-fb"].iter().find_map(|name| {
            line.strip_prefix(&format!("a={name}:"))
                .and_then(|rest| rest.split_whitespace().next())
        });
        if about.is_some_and(&drop) {
            continue;
        }
        out.push((*line).to_owned());
    }
    out
}

/// GStreamer's name for the H.264 profile of a `profile-level-id` (its
/// first two bytes: profile_idc and the constraint flags), as h264parse
/// names profiles.
fn h264_profile_name(profile_level_id: &str) -> Option<&'static str> {
    let idc = u8::from_str_radix(profile_level_id.get(..2)?, 16).ok()?;
    let flags = u8::from_str_radix(profile_level_id.get(2..4)?, 16).ok()?;
    Some(match (idc, flags) {
        (66, f) if f & 0x40 != 0 => "constrained-baseline",
        (66, _) => "baseline",
        (77, _) => "main",
        (88, _) => "extended",
        (100, f) if f & 0x0c == 0x0c => "constrained-high",
        (100, f) if f & 0x08 != 0 => "progressive-high",
        (100, _) => "high",
        (110, _) => "high-10",
        (122, _) => "high-4:2:2",
        (244, _) => "high-4:4:4",
        _ => return None,
    })
}

/// Leaves in each video section of a viewer's offer one payload type of
/// `codec` (and its RTX): the one the stream can be sent as. For H.264 that
/// is the first with packetization-mode 1 and the stream's profile (its
/// GStreamer name, `constrained-baseline`, when known: whepserversink
/// refuses a baseline payload type for a constrained-baseline stream), else
/// the first with packetization-mode 1.
/// whepserversink tries the offer's payload types one after another, each
/// with a test pipeline; Chromium offers a dozen H.264 ones, and trying
/// them took 6-7 s before the answer. A section with nothing suitable is
/// left as it is.
pub fn keep_one_video_payload(offer: &str, codec: Video, profile: Option<&str>) -> String {
    rewrite_sections(offer, "m=video", |section, all| {
        let Some(chosen) = video_payload(section, all, codec, profile) else {
            return section.iter().map(|l| (*l).to_owned()).collect();
        };
        let kept: Vec<&str> = all
            .iter()
            .filter(|p| p.pt == chosen.pt || p.apt.as_deref() == Some(chosen.pt.as_str()))
            .map(|p| p.pt.as_str())
            .collect();
        with_payloads(section, &kept, |pt| !kept.contains(&pt))
    })
}

/// The payload type of `codec` a stream is sent as (see
/// `keep_one_video_payload`), if the section has one.
fn video_payload<'a>(
    section: &[&str],
    all: &'a [Payload],
    codec: Video,
    profile: Option<&str>,
) -> Option<&'a Payload> {
    let fmtp = |p: &Payload| attribute(section, "fmtp", &p.pt).unwrap_or_default();
    let mode1 = |p: &Payload| fmtp(p).contains("packetization-mode=1");
    let name = |p: &Payload| {
        fmtp(p)
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix("profile-level-id="))
            .and_then(h264_profile_name)
    };
    let mut of_codec = all
        .iter()
        .filter(|p| Video::parse(&p.encoding) == Some(codec));
    match codec {
        Video::H264 => of_codec
            .clone()
            .find(|p| mode1(p) && profile.is_some_and(|want| name(p) == Some(want)))
            .or_else(|| of_codec.find(|p| mode1(p))),
        _ => of_codec.next(),
    }
}

/// The `a=mid:` of each media section, in order.
fn mids(lines: &[&str]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("m=") {
            out.push(section_mid(section_lines(lines, i)).map(str::to_owned));
        }
    }
    out
}

/// Checks that the answer carries exactly the offer's media sections and
/// puts them in the offer's order (matched by `a=mid`): whepserversink
/// sometimes answered audio before video when the offer had video first,
/// and browsers reject an answer whose m-lines are out of order. An answer
/// with other sections than the offer's (more, fewer, other mids) is an
/// error: every peer rejects it, so it must never be sent.
pub fn align_answer(offer: &str, answer: &str) -> Result<String, String> {
    let answer_lines = split_lines(answer);
    let wanted = mids(&split_lines(offer));
    let have = mids(&answer_lines);
    same_sections(&wanted, &have)?;
    // Without mids only the count can be checked.
    if wanted == have || wanted.iter().any(Option::is_none) {
        return Ok(answer.to_owned());
    }
    Ok(in_order(&answer_lines, &wanted))
}

/// Whether an answer's media sections (their mids, `have`) are the offer's
/// (`wanted`), in any order; what differs when they are not.
fn same_sections(wanted: &[Option<String>], have: &[Option<String>]) -> Result<(), String> {
    let show = |mids: &[Option<String>]| {
        mids.iter()
            .map(|m| m.as_deref().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if wanted.len() != have.len() {
        return Err(format!(
            "the answer has {} media sections ({}) for the offer's {} ({})",
            have.len(),
            show(have),
            wanted.len(),
            show(wanted)
        ));
    }
    if wanted.iter().any(Option::is_none) {
        return Ok(());
    }
    let same_set =
        wanted.iter().all(|m| have.contains(m)) && have.iter().all(|m| wanted.contains(m));
    if !same_set {
        return Err(format!(
            "the answer's media sections ({}) are not the offer's ({})",
            show(have),
            show(wanted)
        ));
    }
    Ok(())
}

/// The answer with its media sections (and its BUNDLE group) in the order
/// of the mids in `wanted`.
fn in_order(answer_lines: &[&str], wanted: &[Option<String>]) -> String {
    let first = answer_lines
        .iter()
        .position(|l| l.starts_with("m="))
        .unwrap_or(answer_lines.len());
    let mut sections: Vec<(Option<String>, &[&str])> = Vec::new();
    let mut i = first;
    while i < answer_lines.len() {
        let section = section_lines(answer_lines, i);
        sections.push((section_mid(section).map(str::to_owned), section));
        i += section.len();
    }
    let order: Vec<&str> = wanted.iter().flatten().map(String::as_str).collect();
    let mut out: Vec<String> = answer_lines[..first]
        .iter()
        .map(|l| match l.strip_prefix("a=group:BUNDLE ") {
            Some(_) => format!("a=group:BUNDLE {}", order.join(" ")),
            None => (*l).to_owned(),
        })
        .collect();
    for mid in wanted {
        if let Some((_, section)) = sections.iter().find(|(m, _)| m == mid) {
            out.extend(section.iter().map(|l| (*l).to_owned()));
        }
    }
    join_lines(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Chromium's offer (trimmed): VP8 first, with RTX, RED
    /// and ULPFEC; then H.264.
    const CHROME: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n\
a=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 116 117 118\r\n\
a=mid:1\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:116 red/90000\r\n\
a=rtpmap:117 rtx/90000\r\n\
a=fmtp:117 apt=116\r\n\
a=rtpmap:118 ulpfec/90000\r\n";

    /// The shape of whepclientsrc's offer.
    const GST: &str = "v=0\r\n\
o=- 1 0 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42e016\r\n\
a=rtcp-fb:96 nack pli\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 97\r\n\
a=rtpmap:97 OPUS/48000/2\r\n";

    #[test]
    fn picks_the_peers_first_carried_codec() {
        assert_eq!(preferred_video(CHROME), Some(Video::Vp8));
        assert_eq!(preferred_video(GST), Some(Video::H264));
        assert_eq!(preferred_video("v=0\r\nm=audio 9 RTP 111\r\n"), None);
        assert!(has_media(CHROME, "audio") && has_media(CHROME, "video"));
        assert!(!has_media("v=0\r\nm=audio 9 RTP 111\r\n", "video"));
    }

    #[test]
    fn removes_fec_and_its_rtx() {
        let fixed = fix_offer(CHROME);
        assert!(
            fixed.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n"),
            "{fixed}"
        );
        for gone in ["a=rtpmap:116", "a=rtpmap:117", "a=fmtp:117", "a=rtpmap:118"] {
            assert!(!fixed.contains(gone), "{gone} left in\n{fixed}");
        }
        assert!(
            fixed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{fixed}"
        );
        assert!(!fixed.contains("a=fmtp:63"), "{fixed}");
        // What stays is untouched.
        assert!(fixed.contains("a=fmtp:97 apt=96\r\n"));
        assert!(fixed.contains("a=mid:1\r\n"));
        assert_eq!(fixed.matches("level-asymmetry-allowed").count(), 1);
    }

    #[test]
    fn lets_h264_levels_differ() {
        let fixed = fix_offer(GST);
        assert!(
            fixed.contains(
                "a=fmtp:96 packetization-mode=1;profile-level-id=42e016;level-asymmetry-allowed=1\r\n"
            ),
            "{fixed}"
        );
        assert!(fixed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 97\r\n"));
        // Idempotent.
        assert_eq!(fix_offer(&fixed), fixed);
    }

    /// Chromium's offer when it publishes video with simulcast (trimmed):
    /// audio names its SSRC, video (RIDs h, m, l) names none.
    const SIMULCAST: &str = "v=0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=ssrc:994808912 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rid:h send\r\n\
a=rid:m send\r\n\
a=simulcast:send h;m;l\r\n";

    #[test]
    fn a_section_without_ssrcs_must_lead_its_bundle() {
        let why = unroutable(SIMULCAST).expect("audio first, unnamed video: refused");
        assert!(why.contains("video (mid 1) names no SSRCs"), "{why}");
        assert!(why.contains("for the audio's"), "{why}");

        // The unnamed video first; every section named; none sending (a
        // viewer); no BUNDLE (a transport each): webrtcbin routes them.
        let video_first = SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 1 0");
        let named = SIMULCAST.replace("a=rid:h send", "a=ssrc:1 cname:x");
        let viewer = SIMULCAST.replace("a=sendonly", "a=recvonly");
        let unbundled = SIMULCAST.replace("a=group:BUNDLE 0 1\r\n", "");
        for offer in [video_first, named, viewer, unbundled] {
            assert_eq!(unroutable(&offer), None, "{offer}");
        }
        // Two unnamed sections: one of them is not first.
        let none_named = SIMULCAST.replace("a=ssrc:994808912 cname:x\r\n", "");
        assert!(unroutable(&none_named).is_some());
        // Chromium's offers without simulcast name their SSRCs.
        assert_eq!(unroutable(CHROME), None);
    }

    #[test]
    fn answers_follow_the_offers_order() {
        let offer = "v=0\r\na=group:BUNDLE v a\r\nm=video 9 RTP 96\r\na=mid:v\r\nm=audio 9 RTP 111\r\na=mid:a\r\n";
        let swapped = "v=0\r\na=group:BUNDLE a v\r\nm=audio 9 RTP 111\r\na=mid:a\r\na=sendonly\r\n\
                       m=video 9 RTP 96\r\na=mid:v\r\na=sendonly\r\n";
        let aligned = align_answer(offer, swapped).unwrap();
        assert_eq!(
            aligned,
            "v=0\r\na=group:BUNDLE v a\r\nm=video 9 RTP 96\r\na=mid:v\r\na=sendonly\r\n\
             m=audio 9 RTP 111\r\na=mid:a\r\na=sendonly\r\n"
        );
        // In order already: untouched.
        assert_eq!(align_answer(offer, &aligned).unwrap(), aligned);
    }

    #[test]
    fn answers_with_other_sections_are_refused() {
        let offer =
            "v=0\r\nm=video 9 RTP 96\r\na=mid:video0\r\nm=audio 9 RTP 111\r\na=mid:audio1\r\n";
        // What whepserversink answered when a stream's codec discovery
        // finished after the offer was in: a third, extra video section.
        let extra = "v=0\r\na=group:BUNDLE video0 audio1 video1\r\n\
                     m=video 9 RTP 96\r\na=mid:video0\r\nm=audio 0 RTP 111\r\na=mid:audio1\r\n\
                     m=video 0 RTP 96\r\na=mid:video1\r\n";
        let err = align_answer(offer, extra).unwrap_err();
        assert!(
            err.contains("3 media sections (video0, audio1, video1)"),
            "{err}"
        );
        assert!(err.contains("offer's 2 (video0, audio1)"), "{err}");
        let other = "v=0\r\nm=video 9 RTP 96\r\na=mid:x\r\nm=audio 9 RTP 111\r\na=mid:audio1\r\n";
        assert!(
            align_answer(offer, other)
                .unwrap_err()
                .contains("not the offer's")
        );
        let fewer = "v=0\r\nm=video 9 RTP 96\r\na=mid:video0\r\n";
        assert!(align_answer(offer, fewer).is_err());
        // No mids to match by: the count decides.
        let bare = "v=0\r\nm=video 9 RTP 96\r\nm=audio 9 RTP 111\r\n";
        assert!(align_answer(bare, bare).is_ok());
        assert!(align_answer(bare, fewer).is_err());
    }

    #[test]
    fn one_payload_of_the_streams_codec_is_kept() {
        // Chromium's video section, shortened: VP8, H.264 baseline mode 0
        // and 1, constrained baseline mode 1, high mode 1, each with RTX.
        let offer = "v=0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 100 101 102 103 104 105 108 109\r\n\
a=mid:0\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:100 H264/90000\r\n\
a=fmtp:100 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtpmap:101 rtx/90000\r\na=fmtp:101 apt=100\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
a=rtpmap:104 H264/90000\r\n\
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\n\
a=rtpmap:108 H264/90000\r\n\
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034\r\n\
a=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";
        let high = keep_one_video_payload(offer, Video::H264, Some("high"));
        assert!(
            high.contains("m=video 9 UDP/TLS/RTP/SAVPF 108 109\r\n"),
            "{high}"
        );
        assert!(
            !high.contains("a=rtpmap:96 ") && !high.contains("a=fmtp:102"),
            "{high}"
        );
        assert!(high.contains("a=fmtp:109 apt=108\r\n"));
        assert!(
            high.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{high}"
        );
        // Chromium's 42e01f is constrained baseline, 42001f baseline: the
        // stream's profile picks.
        let constrained = keep_one_video_payload(offer, Video::H264, Some("constrained-baseline"));
        assert!(constrained.contains("SAVPF 104 105\r\n"), "{constrained}");
        let base = keep_one_video_payload(offer, Video::H264, Some("baseline"));
        assert!(base.contains("SAVPF 102 103\r\n"), "{base}");
        assert!(base.contains("a=rtcp-fb:102 nack pli\r\n"));
        // Unknown profile: the first in mode 1.
        assert!(keep_one_video_payload(offer, Video::H264, None).contains("SAVPF 102 103\r\n"));
        let vp8 = keep_one_video_payload(offer, Video::Vp8, None);
        assert!(
            vp8.contains("SAVPF 96 97\r\n") && !vp8.contains("H264"),
            "{vp8}"
        );
        // Nothing of that codec: untouched.
        assert_eq!(keep_one_video_payload(offer, Video::Vp9, None), offer);
        assert_eq!(h264_profile_name("42e01f"), Some("constrained-baseline"));
        assert_eq!(h264_profile_name("640c1f"), Some("constrained-high"));
        assert_eq!(h264_profile_name("4d001f"), Some("main"));
        assert_eq!(h264_profile_name("zz"), None);
    }

    #[test]
    fn a_section_of_only_fec_is_left_alone() {
        let offer = "v=0\r\nm=video 9 RTP 116\r\na=rtpmap:116 red/90000\r\n";
        assert_eq!(fix_offer(offer), offer);
    }
}
