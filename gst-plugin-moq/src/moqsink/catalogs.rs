// SPDX-License-Identifier: MIT OR Apache-2.0

//! The broadcast's catalogs: hang's `catalog.json` for the MoQ project's
//! players, and the IETF MSF `catalog` with LOC twins of the media tracks for
//! MoQT media players (see `crate::msf` for why they are twins).
//!
//! moq-mux's catalog producer writes hang's catalog, and an MSF catalog of
//! its own that lists hang's tracks, which IETF readers cannot decode. So it
//! lives on a broadcast of its own that nobody subscribes to, and the tasks
//! here carry what each kind of reader needs onto the published broadcast:
//! `catalog.json` (and its compressed copy) as they are, and an MSF catalog
//! built from each hang catalog. A twin costs nothing until a subscriber asks
//! for it: its frames are copied only while the twin track is in use.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use moq_mux::container::Container as _;
use tokio::task::JoinHandle;

use super::Catalogs;
use crate::msf;
use crate::runtime::RUNTIME;

/// The wall-clock time of running time zero, from a reading of the wall
/// clock and the running time at the same moment.
pub fn wall_of_zero(now: SystemTime, running: gst::ClockTime) -> Option<SystemTime> {
    now.checked_sub(Duration::from_nanos(running.nseconds()))
}

/// Advertise `zero`, the wall-clock time of running time zero (timestamp
/// zero of every track), as the catalog's `clock`, so that readers can tell
/// a frame's wall-clock time (`wall + timestamp`). The first anchor stays:
/// the mapping of a broadcast does not move.
pub fn anchor(catalog: &mut moq_mux::catalog::Producer, zero: SystemTime) -> Result<(), String> {
    if catalog.snapshot().clock.is_some() {
        return Ok(());
    }
    let since_unix = zero
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| "the wall clock is before 1970".to_string())?;
    let micros = u64::try_from(since_unix.as_micros())
        .ok()
        .and_then(|us| us.checked_sub(hang::catalog::MOQ_EPOCH_UNIX_MILLIS * 1000))
        .ok_or("the wall clock is before 2020 (not set yet?)")?;
    let wall = moq_net::Timestamp::from_micros(micros).map_err(|e| e.to_string())?;
    let clock = hang::catalog::Clock::new(wall).map_err(|e| e.to_string())?;
    catalog
        .mutate(|catalog| catalog.clock = Some(clock))
        .map_err(|e| e.to_string())
}

/// The tasks that publish the catalogs; they end with the element's session.
pub struct Publishing {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Publishing {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The published broadcast and moq-mux's catalog producer, on a broadcast of
/// its own; `which` catalogs are published, beginning now.
pub fn publish(
    broadcast: &moq_net::broadcast::Producer,
    which: Catalogs,
) -> Result<(moq_mux::catalog::Producer, Publishing), moq_net::Error> {
    let mut home = moq_net::broadcast::Info::new().produce();
    let mut catalog =
        moq_mux::catalog::Producer::new(&mut home, moq_mux::catalog::Config::default())?;
    // moq-mux's clock puts timestamp zero 10 s before now; ours is running
    // time zero, unknown until the element plays (`anchor`). No mapping
    // until then rather than a false one. (This fails only once the catalog
    // is closed, which a new one is not.)
    let _ = catalog.mutate(|catalog| catalog.clock = None);
    let home = home.consume();
    let mut tasks = Vec::new();
    if which != Catalogs::Msf {
        for name in [hang::Catalog::DEFAULT_NAME, hang::Catalog::COMPRESSED_NAME] {
            let to = broadcast.create_track(name, hang::Catalog::default_track_info())?;
            let from = home.track(name)?;
            tasks.push(RUNTIME.spawn(async move {
                let Ok(from) = from.subscribe(hang::Catalog::default_subscription()).await else {
                    return;
                };
                copy(from, &to).await;
            }));
        }
    }
    if which != Catalogs::Hang {
        let info = moq_net::track::Info::default().with_priority(hang::catalog::PRIORITY.catalog);
        let to = broadcast.create_track(msf::CATALOG_TRACK, info)?;
        let from = home.track(hang::Catalog::DEFAULT_NAME)?;
        let broadcast = broadcast.clone();
        tasks.push(RUNTIME.spawn(async move {
            let Ok(from) = from.subscribe(hang::Catalog::default_subscription()).await else {
                return;
            };
            let from = moq_mux::catalog::hang::Consumer::<()>::new(from);
            publish_msf(from, to, broadcast).await;
        }));
    }
    Ok((catalog, Publishing { tasks }))
}

/// Copies `from`'s groups into `to` under the same sequence numbers, and
/// finishes `to` when `from` ends.
async fn copy(mut from: moq_net::track::Subscriber, to: &moq_net::track::Producer) {
    while let Ok(Some(mut group)) = from.recv_group().await {
        let Ok(mut out) = to.create_group(moq_net::group::Info {
            sequence: group.sequence,
        }) else {
            continue;
        };
        while let Ok(Some(frame)) = group.read_frame().await {
            if out.write_frame(frame.timestamp, frame.payload).is_err() {
                break;
            }
        }
        let _ = out.finish();
    }
    let _ = to.finish();
}

/// Publishes an MSF catalog for every hang catalog `from` gives, and keeps a
/// LOC twin of each rendition it lists.
async fn publish_msf(
    mut from: moq_mux::catalog::hang::Consumer<()>,
    mut to: moq_net::track::Producer,
    broadcast: moq_net::broadcast::Producer,
) {
    let mut twins: HashMap<String, Twin> = HashMap::new();
    while let Ok(Some(hang)) = from.next().await {
        let listed = rendition_wires(&hang);
        twins.retain(|name, _| listed.iter().any(|(n, _)| n == name));
        for (name, wire) in listed {
            if twins.contains_key(&name) {
                continue;
            }
            match Twin::spawn(&broadcast, &name, wire) {
                Ok(twin) => {
                    twins.insert(name, twin);
                }
                Err(err) => tracing::warn!(track = %name, %err, "no LOC twin"),
            }
        }
        let Ok(json) = msf::catalog(&hang).to_json() else {
            continue;
        };
        if to.write_frame(moq_net::Timestamp::now(), json).is_err() {
            return;
        }
    }
    let _ = to.finish();
}

/// Each rendition's name and how its frames are packed.
fn rendition_wires(hang: &hang::Catalog) -> Vec<(String, moq_mux::catalog::hang::Container)> {
    use moq_mux::container::Kind;
    let video = hang
        .video
        .renditions
        .iter()
        .map(|(n, c)| (n, &c.container, Kind::Video));
    let audio = hang
        .audio
        .renditions
        .iter()
        .map(|(n, c)| (n, &c.container, Kind::Audio));
    video
        .chain(audio)
        .filter_map(|(name, container, kind)| {
            let wire = moq_mux::catalog::hang::Container::new(container, kind).ok()?;
            Some((name.clone(), wire))
        })
        .collect()
}

/// The IETF LOC copy of one hang track, fed while anyone reads it.
struct Twin {
    task: JoinHandle<()>,
}

impl Drop for Twin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Twin {
    fn spawn(
        broadcast: &moq_net::broadcast::Producer,
        name: &str,
        wire: moq_mux::catalog::hang::Container,
    ) -> Result<Self, moq_net::Error> {
        let priority = match wire.kind() {
            moq_mux::container::Kind::Video => hang::catalog::PRIORITY.video,
            _ => hang::catalog::PRIORITY.audio,
        };
        let twin =
            broadcast.create_track(msf::loc_track(name), hang::container::track_info(priority))?;
        // The hang track is only opened while the twin is read: a handle on
        // it counts as a subscriber, which `on-demand` must not see.
        let broadcast = broadcast.consume();
        let name = name.to_string();
        let task = RUNTIME.spawn(async move {
            let mut last = 0;
            loop {
                if twin.used().await.is_err() {
                    return;
                }
                let Ok(source) = broadcast.track(&name) else {
                    return;
                };
                let Ok(from) = source
                    .subscribe(moq_net::track::Subscription::default())
                    .await
                else {
                    return;
                };
                tokio::select! {
                    () = copy_loc(from, &twin, last, &wire) => {
                        // The hang track ended: so does its twin.
                        let _ = twin.finish();
                        return;
                    }
                    _ = twin.unused() => {}
                }
                last = twin.latest().unwrap_or(last);
            }
        });
        Ok(Self { task })
    }
}

/// Copies a hang track's groups above `after` into its twin, each frame's
/// media behind an empty LOC Private Properties block; the timestamp rides
/// in the frame (the relay writes it as the object's Timestamp property).
async fn copy_loc(
    mut from: moq_net::track::Subscriber,
    to: &moq_net::track::Producer,
    after: u64,
    wire: &moq_mux::catalog::hang::Container,
) {
    while let Ok(Some(mut group)) = from.recv_group().await {
        // Resumed for a new reader: the groups copied before stay as they are.
        if after > 0 && group.sequence <= after {
            continue;
        }
        let Ok(mut out) = to.create_group(moq_net::group::Info {
            sequence: group.sequence,
        }) else {
            continue;
        };
        while let Ok(Some(frames)) = wire.read(&mut group).await {
            for frame in frames {
                // Duration markers and empty frames carry no media.
                if frame.payload.is_empty() || wire.end(&frame).is_some() {
                    continue;
                }
                if write_loc(&mut out, frame).is_err() {
                    return;
                }
            }
        }
        let _ = out.finish();
    }
}

fn write_loc(
    group: &mut moq_net::group::Producer,
    frame: moq_mux::container::Frame,
) -> Result<(), moq_net::Error> {
    let prefix = msf::EMPTY_PRIVATE_PROPERTIES;
    let mut out = group.create_frame(moq_net::frame::Info {
        size: (prefix.len() + frame.payload.len()) as u64,
        timestamp: frame.timestamp,
    })?;
    // Two chunks: the media is not copied.
    out.write(Bytes::from_static(prefix))?;
    out.write(frame.payload)?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_running_time_zero_once_known() {
        let _guard = RUNTIME.enter();
        let origin = crate::connection::spawn_origin(Duration::from_secs(1));
        let broadcast = origin.create_broadcast("clock").unwrap();
        let (mut catalog, _publishing) = publish(&broadcast, Catalogs::Both).unwrap();
        // moq-mux's own mapping (10 s before the catalog) is not ours.
        assert_eq!(catalog.snapshot().clock, None);

        // Playing since 2 s at 2020-01-01 00:16:42 UTC: zero was at 00:16:40.
        let moq_epoch =
            SystemTime::UNIX_EPOCH + Duration::from_millis(hang::catalog::MOQ_EPOCH_UNIX_MILLIS);
        let now = moq_epoch + Duration::from_secs(1002);
        let zero = wall_of_zero(now, gst::ClockTime::from_seconds(2)).unwrap();
        anchor(&mut catalog, zero).unwrap();
        let clock = catalog.snapshot().clock.expect("a clock once anchored");
        assert_eq!(clock.wall.as_micros(), 1_000_000_000);
        let frame = moq_net::Timestamp::from_micros(2_000_000).unwrap();
        assert_eq!(clock.wall_clock(frame).unwrap(), now);

        // It does not move afterwards (a pause and resume).
        anchor(&mut catalog, zero + Duration::from_secs(30)).unwrap();
        assert_eq!(catalog.snapshot().clock, Some(clock));
        // A wall clock before 2020 is said, not advertised.
        let second = origin.create_broadcast("clock-unset").unwrap();
        let mut other = publish(&second, Catalogs::Hang).unwrap().0;
        assert!(anchor(&mut other, SystemTime::UNIX_EPOCH).is_err());
        assert_eq!(other.snapshot().clock, None);
    }
}
