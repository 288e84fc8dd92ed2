//! The event bus behind `/events`: operations publish what they did; each
//! `/events` stream replays the recent past (for `since`) and then follows
//! new events. Also the wire shape, which below API 1.52 carries the legacy
//! `status`/`id`/`from` fields docker-compose 1.x still reads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use serde::Serialize;
use tokio::sync::broadcast;

use super::error::ApiError;
use super::query::Filters;

/// Events kept for `since` replays (moby keeps 256; we keep a little more).
const KEEP: usize = 1024;
/// Events a live subscriber may fall behind before it misses some.
const LIVE_DEPTH: usize = 1024;

/// Something that happened to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventMessageTypeEnum,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

impl Event {
    /// An image event, stamped now. `name` is the reference involved (moby's
    /// `name` attribute).
    pub fn image(action: &str, id: &str, name: &str) -> Event {
        let mut attributes = BTreeMap::new();
        attributes.insert("name".to_owned(), name.to_owned());
        Event {
            kind: EventMessageTypeEnum::IMAGE,
            action: action.to_owned(),
            actor_id: id.to_owned(),
            attributes,
            time_nano: now_nanos(),
        }
    }

    /// A container event from the engine, stamped now.
    pub fn container(event: &hutch_engine::containers::EngineEvent) -> Event {
        use hutch_engine::containers::EventKind;
        Event {
            kind: match event.kind {
                EventKind::Container => EventMessageTypeEnum::CONTAINER,
                EventKind::Network => EventMessageTypeEnum::NETWORK,
            },
            action: event.action.clone(),
            actor_id: event.id.clone(),
            attributes: event.attributes.clone(),
            time_nano: now_nanos(),
        }
    }

    /// The message as sent to a client.
    pub fn wire(&self) -> WireEvent {
        let from = match self.kind {
            EventMessageTypeEnum::CONTAINER => self.attributes.get("image").cloned(),
            _ => None,
        };
        WireEvent {
            legacy_status: Some(self.action.clone()),
            legacy_id: Some(self.actor_id.clone()),
            legacy_from: from,
            message: EventMessage {
                typ: Some(self.kind),
                action: Some(self.action.clone()),
                actor: Some(EventActor {
                    id: Some(self.actor_id.clone()),
                    attributes: Some(self.attributes.clone().into_iter().collect()),
                }),
                scope: Some(EventMessageScopeEnum::LOCAL),
                time: Some(self.time_nano.div_euclid(1_000_000_000)),
                time_nano: Some(self.time_nano),
            },
        }
    }
}

/// bollard's `EventMessage` plus the legacy fields it dropped.
#[derive(Debug, Serialize)]
pub struct WireEvent {
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub legacy_status: Option<String>,
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    #[serde(rename = "from", skip_serializing_if = "Option::is_none")]
    pub legacy_from: Option<String>,
    #[serde(flatten)]
    pub message: EventMessage,
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[derive(Debug)]
pub struct EventBus {
    recent: Mutex<VecDeque<Arc<Event>>>,
    live: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
            live: broadcast::channel(LIVE_DEPTH).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        tracing::debug!(kind = %event.kind, action = %event.action, id = %event.actor_id, "event");
        let event = Arc::new(event);
        // Under the lock, so a subscriber sees each event exactly once:
        // either in its replay or live.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // No receivers is fine: nobody is listening.
        let _ = self.live.send(event);
    }

    /// Publishes a container event from the engine.
    pub fn publish_container(&self, event: &hutch_engine::containers::EngineEvent) {
        self.publish(Event::container(event));
    }

    /// The events kept so far and a receiver for those after them.
    pub fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (recent.iter().cloned().collect(), self.live.subscribe())
    }

    pub fn listeners(&self) -> usize {
        self.live.receiver_count()
    }
}

/// `/events` filters, as moby's `events.Filter`.
#[derive(Debug, Clone)]
pub struct EventFilter {
    filters: Filters,
}

impl EventFilter {
    pub fn new(filters: Filters) -> Result<EventFilter, ApiError> {
        filters.allow_only(&[
            "config",
            "container",
            "daemon",
            "event",
            "image",
            "label",
            "network",
            "node",
            "plugin",
            "scope",
            "secret",
            "service",
            "type",
            "volume",
        ])?;
        Ok(EventFilter { filters })
    }

    pub fn matches(&self, event: &Event) -> bool {
        let kind = event.kind.to_string();
        self.any_or_none("type", |v| v == kind)
            && self.any_or_none("event", |v| v == event.action)
            && self.any_or_none("scope", |v| v == "local")
            && self.any_or_none("label", |v| match v.split_once('=') {
                Some((k, val)) => event.attributes.get(k).is_some_and(|a| a == val),
                None => event.attributes.contains_key(v),
            })
            && self.object("image", EventMessageTypeEnum::IMAGE, event)
            && self.object("container", EventMessageTypeEnum::CONTAINER, event)
            && self.object("network", EventMessageTypeEnum::NETWORK, event)
            && self.object("volume", EventMessageTypeEnum::VOLUME, event)
            && self.object("daemon", EventMessageTypeEnum::DAEMON, event)
            && self.object("plugin", EventMessageTypeEnum::PLUGIN, event)
    }

    /// True when the key is not filtered on, or any of its values matches.
    fn any_or_none(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        !self.filters.contains_key(key) || self.filters.values(key).any(pred)
    }

    /// An object filter (`image=busybox`) keeps events of that object only:
    /// matched by ID, ID prefix or name. Containers' events also match an
    /// `image` filter on the image they run, as in moby.
    fn object(&self, key: &str, kind: EventMessageTypeEnum, event: &Event) -> bool {
        if !self.filters.contains_key(key) {
            return true;
        }
        let names_image = key == "image" && event.kind == EventMessageTypeEnum::CONTAINER;
        if event.kind != kind && !names_image {
            return false;
        }
        self.filters.values(key).any(|v| {
            if names_image {
                return event
                    .attributes
                    .get("image")
                    .is_some_and(|i| same_name(i, v));
            }
            let id = event.actor_id.trim_start_matches("sha256:");
            let v_id = v.trim_start_matches("sha256:");
            (!v_id.is_empty() && id.starts_with(v_id))
                || event
                    .attributes
                    .get("name")
                    .is_some_and(|n| same_name(n, v))
        })
    }
}

/// `busybox` names `busybox:latest`, as the docker CLI's short forms do.
fn same_name(name: &str, wanted: &str) -> bool {
    name == wanted || name.strip_suffix(":latest") == Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_has_legacy_fields() {
        let mut e = Event::image("tag", "sha256:abc", "busybox:latest");
        e.time_nano = 1_700_000_000_123_456_789;
        let json = serde_json::to_value(e.wire()).expect("serializes");
        assert_eq!(json["status"], "tag");
        assert_eq!(json["id"], "sha256:abc");
        assert_eq!(json["Type"], "image");
        assert_eq!(json["Action"], "tag");
        assert_eq!(json["Actor"]["ID"], "sha256:abc");
        assert_eq!(json["Actor"]["Attributes"]["name"], "busybox:latest");
        assert_eq!(json["scope"], "local");
        assert_eq!(json["time"], 1_700_000_000);
        assert_eq!(json["timeNano"], 1_700_000_000_123_456_789_i64);
    }

    #[test]
    fn replay_then_live() {
        let bus = EventBus::default();
        bus.publish(Event::image("tag", "sha256:a", "x:1"));
        let (past, mut live) = bus.subscribe();
        bus.publish(Event::image("untag", "sha256:a", "x:1"));
        assert_eq!(past.len(), 1);
        assert_eq!(
            live.try_recv().map(|e| e.action.clone()).ok(),
            Some("untag".into())
        );
    }

    #[test]
    fn filters() {
        let f = |json: &str| {
            EventFilter::new(Filters::from_json(json).expect("valid")).expect("known keys")
        };
        let e = Event::image("tag", "sha256:abcdef", "busybox:latest");
        assert!(f(r#"{"type":["image"]}"#).matches(&e));
        assert!(!f(r#"{"type":["container"]}"#).matches(&e));
        assert!(f(r#"{"event":["tag","untag"]}"#).matches(&e));
        assert!(!f(r#"{"event":["delete"]}"#).matches(&e));
        assert!(f(r#"{"image":["busybox"]}"#).matches(&e));
        assert!(f(r#"{"image":["abcd"]}"#).matches(&e));
        assert!(!f(r#"{"image":["alpine"]}"#).matches(&e));
        assert!(!f(r#"{"container":["x"]}"#).matches(&e));
        assert!(
            EventFilter::new(Filters::from_json(r#"{"color":["red"]}"#).expect("json")).is_err()
        );
    }
}
