// SPDX-License-Identifier: MIT OR Apache-2.0

//! One track of `moqsink`: everything a request pad publishes, from its caps
//! to the end of its last group. Its verbs (`configure`, `write`, `finish`)
//! say what the element should do upstream and on the bus; the element maps
//! that to flow returns, events and messages once the pad's lock is gone.
//! Only the pad's streaming thread and the element's state changes touch a
//! track, so pads never wait for each other.

use bytes::Bytes;

use super::assemble::{Assembler, Frame, Piece};
use super::paramsets;
use super::publish::{Publisher, WriteError};
use crate::catalog::{SinkFormat, TrackKind, VideoHints};

/// At most one keyframe request a second while keyframes come without
/// their parameter sets.
const PARAMS_RETRY: gst::ClockTime = gst::ClockTime::from_seconds(1);

/// Something to post on the bus about a track.
#[derive(Debug, PartialEq)]
pub enum Report {
    /// A keyframe lacking these parameter sets, and none seen to repeat.
    NoParameterSets(&'static str),
    /// The track failed: its name and why.
    Failed { track: String, error: String },
    /// A buffer came before any caps.
    BeforeCaps,
    /// A buffer could not be mapped for reading.
    Unmappable,
}

/// Why a buffer was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// The track ended (EOS, or it was finished): a MoQ track cannot restart.
    Eos,
    NotNegotiated,
    /// Publishing failed; the report says why.
    Error,
}

/// What writing a buffer came to.
#[derive(Debug)]
pub struct Written {
    pub result: Result<(), Refused>,
    /// Ask upstream for a keyframe (GstForceKeyUnit).
    pub request_keyframe: bool,
    pub reports: Vec<Report>,
    /// How far behind its running time (`now`) the last frame was published.
    pub delay_us: Option<i64>,
}

impl Written {
    fn refused(refused: Refused, report: Option<Report>) -> Self {
        Written {
            result: Err(refused),
            request_keyframe: false,
            reports: report.into_iter().collect(),
            delay_us: None,
        }
    }
}

/// What the element knows about a buffer besides its content.
#[derive(Clone, Copy, Default)]
pub struct WriteContext {
    /// A video group this long asks for a keyframe (`max-group-duration`).
    pub max_group: Option<gst::ClockTime>,
    /// The element's running time when the buffer came.
    pub now: Option<gst::ClockTime>,
    /// `on-demand`: publish only while someone subscribes.
    pub on_demand: bool,
}

/// How caps were taken.
#[derive(Debug, PartialEq)]
pub enum Configured {
    /// Same codec and framing: the track goes on with the new configuration.
    InPlace,
    /// A new track by this name (the first, or after a codec change).
    NewTrack(String),
}

/// Counters for `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub groups: u64,
    pub dropped: u64,
    /// Buffers not published because no one subscribed (`on-demand`).
    pub unwatched: u64,
}

/// Where new tracks are published.
pub struct Output<'a> {
    pub broadcast: &'a moq_net::broadcast::Producer,
    pub catalog: &'a moq_mux::catalog::Producer,
    /// How new tracks package their frames (the `container` property).
    pub container: hang::catalog::Container,
}

#[derive(Default)]
pub struct Track {
    /// Creation order of the pad, for generated track names (`0.avc3`, `1.opus`).
    index: u32,
    /// What the pad takes (from its template).
    kind: TrackKind,
    /// Bumped when a caps change needs a new track, so names stay unique.
    generation: u32,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    format: Option<SinkFormat>,
    publisher: Option<Publisher>,
    /// Finished tracks, kept until the element stops: dropping an importer
    /// takes its rendition out of the catalog and ends what a subscriber still
    /// reads of it (the moq CLI's fMP4 export lost the last group that way).
    retired: Vec<Publisher>,
    /// Joins the pieces of video frames (see `assemble`).
    assembler: Assembler,
    eos: bool,
    /// Publishing failed; the error is on the bus and buffers are refused.
    failed: bool,
    /// Video only: drop delta frames until a keyframe opens a group.
    need_keyframe: bool,
    /// Running time of the keyframe that opened the current group.
    group_start: Option<gst::ClockTime>,
    /// Running time of the last keyframe request, to send at most one per group.
    keyframe_requested: Option<gst::ClockTime>,
    /// Where the last published frame ends (running time plus duration): the
    /// last group is closed there when the track finishes.
    last_end: Option<gst::ClockTime>,
    /// A keyframe without parameter sets was reported (once per track).
    warned_params: bool,
    /// Running time of the last keyframe request for parameter sets.
    params_requested: Option<gst::ClockTime>,
    /// `on-demand` dropped the last buffer: no one subscribed.
    unwatched: bool,
    /// Watches the track's subscribers (`on-demand`).
    demand_watch: Option<DemandWatch>,
    /// Text: the language its tags gave, for the catalog rendition.
    language: Option<String>,
    counters: Counters,
}

/// A task following a track's subscribers, stopped with the track.
struct DemandWatch(tokio::task::JoinHandle<()>);

impl Drop for DemandWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Track {
    pub fn new(index: u32, kind: TrackKind) -> Self {
        Track {
            index,
            kind,
            ..Default::default()
        }
    }

    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    pub fn eos(&self) -> bool {
        self.eos
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The MoQ track being published, once caps are known.
    pub fn published(&self) -> Option<&str> {
        self.publisher.as_ref().map(Publisher::name)
    }

    /// A rendition is in the catalog (or on its way, with the first keyframe).
    pub fn is_publishing(&self) -> bool {
        self.publisher.is_some()
    }

    /// Whether anyone subscribes to the track being published.
    pub fn is_used(&self) -> bool {
        self.publisher.as_ref().is_some_and(Publisher::is_used)
    }

    /// The subscriber presence of the track being published.
    pub fn demand(&self) -> Option<moq_net::track::Demand> {
        self.publisher.as_ref().map(Publisher::demand)
    }

    /// Keep `watch` (a task following `demand`) until the track is replaced.
    pub fn set_demand_watch(&mut self, watch: tokio::task::JoinHandle<()>) {
        self.demand_watch = Some(DemandWatch(watch));
    }

    /// `on-demand`: whether to drop a buffer, unread, because no one
    /// subscribes. A rendition whose codec the caps do not tell (VP9,
    /// byte-stream H.265, AV1 without `av1C`) publishes its first keyframe
    /// regardless, or no player would find it in the catalog; that keyframe
    /// stays the track's latest group, which the first subscriber gets
    /// (stale) before the one asked for. When a subscriber comes, video waits
    /// for a keyframe (the element asks for one as it comes).
    fn unwatched(&mut self) -> bool {
        let Some(publisher) = &self.publisher else {
            return false;
        };
        if !publisher.in_catalog() {
            return false;
        }
        if publisher.is_used() {
            if std::mem::take(&mut self.unwatched) {
                self.assembler = Assembler::default();
                self.need_keyframe = self.kind == TrackKind::Video;
                self.keyframe_requested = None;
            }
            return false;
        }
        self.unwatched = true;
        self.counters.unwatched += 1;
        true
    }

    /// A `language-code` tag: text tracks give it in the catalog (now, or
    /// when the track starts). `Err` is why the catalog could not take it.
    pub fn set_language(&mut self, lang: &str) -> Result<(), String> {
        // Tags come again (every sticky event replay); the catalog changes
        // only with the language.
        if self.kind != TrackKind::Text || self.language.as_deref() == Some(lang) {
            return Ok(());
        }
        self.language = Some(lang.to_owned());
        match &mut self.publisher {
            Some(publisher) => publisher.set_language(lang).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    pub fn set_segment(&mut self, segment: gst::FormattedSegment<gst::ClockTime>) {
        self.segment = Some(segment);
    }

    /// After a flush: a new segment and new frames follow on the same track.
    pub fn flush_stop(&mut self) {
        self.assembler = Assembler::default();
        self.eos = false;
        self.segment = None;
    }

    /// Whether the track can publish `caps` (accept-caps): fixed caps of a
    /// codec and framing it carries, of the pad's kind. `Err` says why not.
    pub fn accepts(&self, caps: &gst::CapsRef) -> Result<(), String> {
        if !caps.is_fixed() {
            return Err("they are not fixed".into());
        }
        let format = crate::catalog::sink_format(caps).map_err(|e| e.to_string())?;
        if format.kind() != self.kind {
            return Err(format!(
                "they are {} but the pad takes {}",
                format.kind().as_str(),
                self.kind.as_str()
            ));
        }
        Ok(())
    }

    /// The name of a new track: `track_name`, or the pad's order and codec;
    /// `~N` after a codec change.
    fn name(&self, track_name: Option<String>, format: &SinkFormat) -> String {
        let base =
            track_name.unwrap_or_else(|| format!("{}.{}", self.index, format.track_suffix()));
        match self.generation {
            0 => base,
            g => format!("{base}~{g}"),
        }
    }

    /// Takes new caps: in place when codec and framing stay, else a new
    /// track (the old one ends and leaves the catalog). `Err` is why it
    /// cannot be published.
    pub fn configure(
        &mut self,
        format: SinkFormat,
        hints: &VideoHints,
        track_name: Option<String>,
        output: &Output,
    ) -> Result<Configured, String> {
        if format.kind() != self.kind {
            return Err(format!(
                "they are {} but the pad takes {}",
                format.kind().as_str(),
                self.kind.as_str()
            ));
        }
        // Same codec and framing: go on in place.
        if let (Some(old), Some(publisher)) = (self.format.as_ref(), self.publisher.as_mut())
            && old.same_track(&format)
        {
            publisher.reconfigure(&format).map_err(|e| e.to_string())?;
            self.format = Some(format);
            return Ok(Configured::InPlace);
        }
        if let Some(mut old) = self.publisher.take() {
            // Another codec or framing: end the old track and drop it, which
            // takes its rendition out of the catalog.
            let _ = old.finish();
            self.generation += 1;
        }
        let name = self.name(track_name, &format);
        match Publisher::new(output, &name, &format, hints) {
            Ok(mut publisher) => {
                if let Some(lang) = &self.language
                    && let Err(err) = publisher.set_language(lang)
                {
                    gst::warning!(super::imp::CAT, "language of {name}: {err}");
                }
                self.publisher = Some(publisher);
                self.assembler = Assembler::default();
                self.failed = false;
                self.need_keyframe = format.kind() == TrackKind::Video;
                self.group_start = None;
                self.keyframe_requested = None;
                self.last_end = None;
                self.format = Some(format);
                Ok(Configured::NewTrack(name))
            }
            Err(err) => {
                self.failed = true;
                Err(format!("cannot publish track '{name}': {err}"))
            }
        }
    }

    /// Takes one buffer: video goes through the assembler (pieces of one
    /// frame are joined, see `assemble`), then each whole frame is published.
    pub fn write(&mut self, buffer: gst::Buffer, ctx: WriteContext) -> Written {
        if self.eos {
            return Written::refused(Refused::Eos, None);
        }
        if self.format.is_none() {
            return Written::refused(Refused::NotNegotiated, Some(Report::BeforeCaps));
        }
        if self.publisher.is_none() {
            // Failed (its error is already on the bus), or finished.
            let refused = if self.failed {
                Refused::Error
            } else {
                Refused::Eos
            };
            return Written::refused(refused, None);
        }
        if ctx.on_demand && self.unwatched() {
            return Written {
                result: Ok(()),
                request_keyframe: false,
                reports: Vec::new(),
                delay_us: None,
            };
        }
        let time = self
            .segment
            .as_ref()
            .and_then(|segment| segment.to_running_time(buffer.pts().or(buffer.dts())))
            // Text and data without a timestamp are stamped as they come.
            .or(ctx.now.filter(|_| self.kind.is_sparse()))
            .map(gst::ClockTime::nseconds);
        let flags = buffer.flags();
        let duration = buffer.duration();
        let payload = match buffer.into_mapped_buffer_readable() {
            // Shares the GStreamer memory: the buffer lives as long as MoQ needs the bytes.
            Ok(mapped) => Bytes::from_owner(mapped),
            Err(_) => return Written::refused(Refused::Error, Some(Report::Unmappable)),
        };
        let mut written = Written {
            result: Ok(()),
            request_keyframe: false,
            reports: Vec::new(),
            delay_us: None,
        };
        let frames = self.frames(payload, time, flags, &mut written);
        for frame in frames {
            if let Err(report) = self.write_frame(frame, duration, ctx, &mut written) {
                written.reports.push(report);
                written.result = Err(Refused::Error);
                break;
            }
        }
        written
    }

    /// The whole frames a buffer completes.
    fn frames(
        &mut self,
        payload: Bytes,
        time: Option<u64>,
        flags: gst::BufferFlags,
        written: &mut Written,
    ) -> Vec<Frame> {
        if self.kind != TrackKind::Video {
            // Audio RTP marks the start of a talkspurt, not a frame's end:
            // every buffer is a frame, as every cue and value is.
            return time
                .map(|time| Frame {
                    time,
                    keyframe: true,
                    payload,
                })
                .into_iter()
                .collect();
        }
        let picture = match self.publisher.as_ref().and_then(Publisher::nal_codec) {
            Some(codec) => paramsets::has_slice(codec, &payload),
            None => true,
        };
        let piece = Piece {
            delta: flags.contains(gst::BufferFlags::DELTA_UNIT),
            marker: flags.contains(gst::BufferFlags::MARKER),
            picture,
        };
        let push = self.assembler.push(payload, time, piece);
        if push.dropped {
            self.counters.dropped += 1;
        }
        if push.orphan {
            // The frame before went out without this piece: its group does
            // not decode whole. Start a new one as soon as we can.
            self.counters.dropped += 1;
            self.need_keyframe = true;
            if self.keyframe_requested.is_none() {
                written.request_keyframe = true;
            }
        }
        push.frames().collect()
    }

    /// Group bookkeeping before a video frame: whether to publish it, and
    /// whether to ask upstream for a keyframe.
    fn open_group(
        &mut self,
        running_time: gst::ClockTime,
        keyframe: bool,
        max_group: Option<gst::ClockTime>,
        written: &mut Written,
    ) -> bool {
        if keyframe {
            self.group_start = Some(running_time);
            self.keyframe_requested = None;
        } else if self.need_keyframe {
            // Started or restarted mid-GOP: nothing decodable until a keyframe.
            self.counters.dropped += 1;
            if self.keyframe_requested.is_none() {
                self.keyframe_requested = Some(running_time);
                written.request_keyframe = true;
            }
            return false;
        } else if let (Some(start), Some(max_group)) = (self.group_start, max_group)
            && running_time.saturating_sub(start) >= max_group
            && self
                .keyframe_requested
                .is_none_or(|at| running_time.saturating_sub(at) >= max_group)
        {
            self.keyframe_requested = Some(running_time);
            written.request_keyframe = true;
        }
        true
    }

    /// Publishes one whole frame. `Err` is the report of a failed track.
    fn write_frame(
        &mut self,
        frame: Frame,
        duration: Option<gst::ClockTime>,
        ctx: WriteContext,
        written: &mut Written,
    ) -> Result<(), Report> {
        let running_time = gst::ClockTime::from_nseconds(frame.time);
        let keyframe = frame.keyframe;
        if self.kind == TrackKind::Video
            && !self.open_group(running_time, keyframe, ctx.max_group, written)
        {
            return Ok(());
        }
        let Ok(timestamp) = moq_net::Timestamp::from_micros(running_time.useconds()) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let size = frame.payload.len() as u64;
        let Some(publisher) = self.publisher.as_mut() else {
            return Ok(());
        };
        match publisher.write(frame.payload, timestamp, keyframe) {
            Ok(()) => {
                written.delay_us = ctx.now.map(|now| crate::stats::delay_us(now, running_time));
                self.need_keyframe = false;
                self.last_end = duration.map(|d| running_time + d);
                self.counters.frames += 1;
                self.counters.bytes += size;
                if keyframe {
                    self.counters.groups += 1;
                }
            }
            Err(err) => return self.not_written(err, running_time, written),
        }
        Ok(())
    }

    /// A frame the track did not take: what to drop, ask for and report.
    /// `Err` is the report of a failed track.
    fn not_written(
        &mut self,
        err: WriteError,
        running_time: gst::ClockTime,
        written: &mut Written,
    ) -> Result<(), Report> {
        match err {
            WriteError::NeedKeyframe => {
                self.counters.dropped += 1;
                self.need_keyframe = true;
                if self.keyframe_requested.is_none() {
                    self.keyframe_requested = Some(running_time);
                    written.request_keyframe = true;
                }
            }
            WriteError::NoParameterSets(names) => {
                // Dropped like a delta frame before the first keyframe:
                // nothing in its group decodes. Ask for one with headers.
                self.counters.dropped += 1;
                self.need_keyframe = true;
                // Encoders answer every request with a keyframe, and each
                // would come back here: ask at most once per PARAMS_RETRY.
                self.keyframe_requested = Some(running_time);
                if self
                    .params_requested
                    .is_none_or(|at| running_time.saturating_sub(at) >= PARAMS_RETRY)
                {
                    self.params_requested = Some(running_time);
                    written.request_keyframe = true;
                }
                if !std::mem::replace(&mut self.warned_params, true) {
                    written.reports.push(Report::NoParameterSets(names));
                }
            }
            WriteError::Rewind => {
                gst::warning!(
                    super::imp::CAT,
                    "dropping frame at {running_time} of {}: timestamp went backwards",
                    self.published().unwrap_or_default()
                );
                self.counters.dropped += 1;
            }
            WriteError::Other(err) => {
                let track = self.published().unwrap_or_default().to_owned();
                // Ended as cleanly as it can be: subscribers see it finish.
                if let Some(mut publisher) = self.publisher.take() {
                    let _ = publisher.finish();
                }
                self.failed = true;
                return Err(Report::Failed {
                    track,
                    error: err.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Ends the track (EOS, or its pad released): publishes the frame the
    /// assembler still holds, closes the last group where its last frame
    /// ends, and finishes the track, which is kept until `stop` so that
    /// subscribers read it to the end.
    pub fn finish(&mut self) -> Vec<Report> {
        let mut written = Written {
            result: Ok(()),
            request_keyframe: false,
            reports: Vec::new(),
            delay_us: None,
        };
        if let Some(frame) = self.assembler.flush()
            && let Err(report) =
                self.write_frame(frame, None, WriteContext::default(), &mut written)
        {
            written.reports.push(report);
        }
        self.eos = true;
        if let Some(mut publisher) = self.publisher.take() {
            let end = self
                .last_end
                .and_then(|end| moq_net::Timestamp::from_micros(end.useconds()).ok());
            // A bound before the last frame (a duration that lies) is refused
            // by the importer: finishing then estimates the end instead.
            if let Some(end) = end
                && let Err(err) = publisher.cut(end)
            {
                gst::debug!(
                    super::imp::CAT,
                    "closing the last group of {}: {err}",
                    publisher.name()
                );
            }
            if let Err(err) = publisher.finish() {
                gst::debug!(
                    super::imp::CAT,
                    "finishing track {}: {err}",
                    publisher.name()
                );
            }
            self.retired.push(publisher);
        }
        written.reports
    }

    /// The element stops without EOS: the track is dropped unfinished
    /// (subscribers see it lost, not ended) and the track is reset for the
    /// next start. Returns the finished tracks, to drop once the relay took
    /// what they hold.
    pub fn stop(&mut self) -> Vec<Publisher> {
        let retired = std::mem::take(&mut self.retired);
        // Names and counters go on across restarts ("since the element was made").
        *self = Track {
            index: self.index,
            kind: self.kind,
            generation: self.generation,
            counters: self.counters,
            ..Default::default()
        };
        retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RUNTIME;

    /// A broadcast and catalog on a local origin (no relay needed: tracks
    /// are published into the origin and read from there).
    struct Out {
        _origin: moq_net::origin::Producer,
        broadcast: moq_net::broadcast::Producer,
        catalog: moq_mux::catalog::Producer,
    }

    impl Out {
        fn new() -> Out {
            let _guard = RUNTIME.enter();
            let origin = crate::connection::spawn_origin(std::time::Duration::from_secs(1));
            let mut broadcast = origin.create_broadcast("unit").unwrap();
            let catalog = moq_mux::catalog::Producer::new(
                &mut broadcast,
                moq_mux::catalog::Config::default(),
            )
            .unwrap();
            Out {
                _origin: origin,
                broadcast,
                catalog,
            }
        }

        fn output(&self) -> Output<'_> {
            Output {
                broadcast: &self.broadcast,
                catalog: &self.catalog,
                container: hang::catalog::Container::Loc,
            }
        }
    }

    const OPUS: SinkFormat = SinkFormat::Opus {
        rate: 48000,
        channels: 2,
    };

    fn opus_packet(ms: u64) -> gst::Buffer {
        let mut buffer = gst::Buffer::from_slice(vec![0xfc; 40]);
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(ms));
        b.set_duration(gst::ClockTime::from_mseconds(20));
        buffer
    }

    #[test]
    fn names_follow_order_codec_and_changes() {
        let out = Out::new();
        let hints = VideoHints::default();
        let mut track = Track::new(2, TrackKind::Video);
        let configured = track.configure(SinkFormat::Vp8, &hints, None, &out.output());
        assert_eq!(configured, Ok(Configured::NewTrack("2.vp8".into())));
        assert_eq!(
            track.configure(SinkFormat::Vp8, &hints, None, &out.output()),
            Ok(Configured::InPlace)
        );
        // Another codec: a new track, the name made unique.
        let h264 = SinkFormat::H264 { codec_data: None };
        assert_eq!(
            track.configure(h264, &hints, None, &out.output()),
            Ok(Configured::NewTrack("2.avc3~1".into()))
        );
        assert_eq!(track.published(), Some("2.avc3~1"));
        let mut named = Track::new(0, TrackKind::Video);
        let configured =
            named.configure(SinkFormat::Vp8, &hints, Some("cam".into()), &out.output());
        assert_eq!(configured, Ok(Configured::NewTrack("cam".into())));
    }

    #[test]
    fn the_pad_kind_is_kept() {
        gst::init().unwrap();
        let out = Out::new();
        let mut track = Track::new(0, TrackKind::Video);
        let refused = track.configure(OPUS, &VideoHints::default(), None, &out.output());
        assert_eq!(
            refused,
            Err("they are audio but the pad takes video".into())
        );
        assert!(!track.is_publishing());
        let caps = gst::Caps::builder("audio/x-opus")
            .field("rate", 48000)
            .field("channels", 2)
            .field("channel-mapping-family", 0)
            .build();
        assert!(track.accepts(&caps).is_err());
        assert!(Track::new(1, TrackKind::Audio).accepts(&caps).is_ok());
    }

    #[test]
    fn audio_packets_are_frames_and_groups() {
        gst::init().unwrap();
        let out = Out::new();
        let mut track = Track::new(1, TrackKind::Audio);
        track
            .configure(OPUS, &VideoHints::default(), None, &out.output())
            .unwrap();
        // No segment yet: no running time, nothing published.
        let written = track.write(opus_packet(0), WriteContext::default());
        assert_eq!(written.result, Ok(()));
        assert_eq!(track.counters().frames, 0);
        track.set_segment(gst::FormattedSegment::new());
        for i in 0..5 {
            let written = track.write(opus_packet(20 * i), WriteContext::default());
            assert_eq!(written.result, Ok(()));
            assert!(!written.request_keyframe && written.reports.is_empty());
        }
        let counters = track.counters();
        assert_eq!(
            (counters.frames, counters.groups, counters.bytes),
            (5, 5, 200)
        );
    }

    #[test]
    fn a_finished_track_stays_published_until_stop() {
        gst::init().unwrap();
        let out = Out::new();
        let mut track = Track::new(1, TrackKind::Audio);
        // Before caps: refused, and said so.
        let written = track.write(opus_packet(0), WriteContext::default());
        assert_eq!(written.result, Err(Refused::NotNegotiated));
        assert_eq!(written.reports, vec![Report::BeforeCaps]);
        track
            .configure(OPUS, &VideoHints::default(), None, &out.output())
            .unwrap();
        track.set_segment(gst::FormattedSegment::new());
        assert_eq!(
            track.write(opus_packet(0), WriteContext::default()).result,
            Ok(())
        );
        assert!(track.finish().is_empty());
        assert!(track.eos());
        let written = track.write(opus_packet(20), WriteContext::default());
        assert_eq!(written.result, Err(Refused::Eos));
        // The finished track is handed back at stop, and the counters stay.
        assert_eq!(track.stop().len(), 1);
        assert!(!track.eos());
        assert_eq!(track.counters().frames, 1);
    }
}
