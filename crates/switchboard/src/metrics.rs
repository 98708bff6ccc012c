//! Prometheus metrics of a hub (`GET /metrics`).
//!
//! Nothing here counts anything: [`HubCollector`] is a [`prometheus`] collector that reads
//! the hub's own counters (the relaxed atomics behind `/stats`), gauges and fan-out latency
//! histogram when it is scraped, so the hot path pays nothing for the exposition. Every name
//! it exposes starts with `switchboard_`; docs/operations.md lists them (`tests/docs.rs`
//! checks it). A library user can register a `HubCollector` in their own
//! [`prometheus::Registry`] instead of mounting `/metrics`.
//!
//! [`render`] (`/metrics`) adds the standard process metrics (`process_cpu_seconds_total`,
//! …), read from `/proc` on Linux. They are not part of `HubCollector`: an application that
//! embeds the hub has its own process collector, and the names would clash.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::broker::BrokerStatus;
use crate::hub::{
    Counters, ERROR_CODES, EXPORTED_COUNTERS, Hub, InKind, Initiator, LatencySnapshot, ProxyKind,
    ProxyOutcome, Target,
};
use crate::protocol::CloseCode;

/// Prefix of every metric name.
const PREFIX: &str = "switchboard_";

/// The content type of the text exposition.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A [`Collector`] of one hub's metrics, read at collection time.
pub struct HubCollector {
    hub: Hub,
    descs: Vec<Desc>,
}

impl HubCollector {
    /// A collector of `hub`'s metrics.
    pub fn new(hub: Hub) -> Self {
        // The descriptors are derived from a first collection, so they always match it (the
        // set of families depends only on whether the hub is clustered, fixed at start).
        let descs = families(&hub)
            .iter()
            .filter_map(|family| {
                let labels = family
                    .get_metric()
                    .first()
                    .map(|metric| {
                        metric
                            .get_label()
                            .iter()
                            .map(|pair| pair.name().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                Desc::new(
                    family.name().to_owned(),
                    family.help().to_owned(),
                    labels,
                    HashMap::new(),
                )
                .ok()
            })
            .collect();
        Self { hub, descs }
    }
}

impl Collector for HubCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.hub)
    }
}

/// The hub's metrics and the process's in the Prometheus text exposition format.
pub fn render(hub: &Hub) -> Result<String, prometheus::Error> {
    let mut families = families(hub);
    families.extend(process_families());
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&families, &mut buffer)?;
    String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
}

/// Every metric family of `hub`, read now.
fn families(hub: &Hub) -> Vec<MetricFamily> {
    let gauges = hub.gauges(Vec::new());
    let counters = hub.counters();
    let mut families = vec![
        gauge(
            "connections",
            "Open WebSocket connections.",
            gauges.connections as f64,
        ),
        gauge(
            "rooms",
            "Rooms with at least one member.",
            gauges.rooms as f64,
        ),
        gauge(
            "online_users",
            "Distinct users with at least one connection.",
            gauges.online_users as f64,
        ),
        gauge(
            "channels",
            "Pub/sub channels and patterns with at least one subscriber.",
            gauges.channels as f64,
        ),
        gauge(
            "documents",
            "Yjs documents open on this node.",
            gauges.documents as f64,
        ),
        gauge(
            "document_clients",
            "Connections to open Yjs documents.",
            gauges.document_clients as f64,
        ),
        gauge(
            "uptime_seconds",
            "Seconds since the node started.",
            gauges.uptime_seconds as f64,
        ),
        family(
            "messages_in_total",
            "Client messages received, by protocol type (invalid: unparsable or binary).",
            MetricType::COUNTER,
            InKind::ALL
                .iter()
                .map(|kind| counter_metric(&[("type", kind.label())], counters.messages_in(*kind)))
                .collect(),
        ),
        family(
            "messages_out_total",
            "Frames queued to connections, by whom the send addressed.",
            MetricType::COUNTER,
            Target::ALL
                .iter()
                .map(|target| {
                    counter_metric(
                        &[("target", target.label())],
                        counters.messages_out(*target),
                    )
                })
                .collect(),
        ),
        family(
            "errors_sent_total",
            "error frames sent to clients, by code.",
            MetricType::COUNTER,
            ERROR_CODES
                .iter()
                .map(|code| counter_metric(&[("code", code.as_str())], counters.errors_sent(*code)))
                .collect(),
        ),
        family(
            "connections_closed_total",
            "Connections ended by a close frame, by who sent it first and its code (`other`: a client's code the server does not send).",
            MetricType::COUNTER,
            Initiator::ALL
                .into_iter()
                .flat_map(|initiator| {
                    let known = CloseCode::ALL.into_iter().map(Some);
                    known.chain([None]).map(move |code| {
                        let label = code
                            .map_or_else(|| "other".to_owned(), |code| code.as_u16().to_string());
                        counter_metric(
                            &[("initiator", initiator.label()), ("code", &label)],
                            counters.closes(initiator, code),
                        )
                    })
                })
                .collect(),
        ),
        family(
            "proxy_requests_total",
            "Requests to the backend proxies, by what they were for and how they ended.",
            MetricType::COUNTER,
            ProxyKind::ALL
                .into_iter()
                .flat_map(|kind| {
                    ProxyOutcome::ALL.into_iter().map(move |outcome| {
                        counter_metric(
                            &[("kind", kind.label()), ("outcome", outcome.label())],
                            counters.proxy.requests(kind, outcome),
                        )
                    })
                })
                .collect(),
        ),
        family(
            "proxy_request_duration_seconds_total",
            "Seconds the backend proxy requests took, in total, by what they were for.",
            MetricType::COUNTER,
            ProxyKind::ALL
                .into_iter()
                .map(|kind| {
                    let mut metric = counter_value(counters.proxy.seconds(kind));
                    metric.set_label(label_pairs(&[("kind", kind.label())]));
                    metric
                })
                .collect(),
        ),
        family(
            "build_info",
            "Always 1; the labels say which build this node runs.",
            MetricType::GAUGE,
            vec![gauge_metric(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        ),
        broker_state(hub),
        family(
            "broker_dropped_total",
            "Publications the broker dropped instead of reaching the other nodes (outages).",
            MetricType::COUNTER,
            vec![counter_metric(
                &[("broker", hub.broker().name())],
                hub.broker().dropped(),
            )],
        ),
        latency_family(&counters.fanout_latency.snapshot()),
    ];
    families.extend(EXPORTED_COUNTERS.iter().map(|exported| {
        family(
            exported.name,
            exported.help,
            MetricType::COUNTER,
            vec![counter_metric(
                &[],
                Counters::get((exported.counter)(counters)),
            )],
        )
    }));
    if let Some(nodes) = hub.cluster_node_count() {
        families.push(gauge(
            "cluster_nodes",
            "Live nodes in the cluster, this one included.",
            nodes as f64,
        ));
    }
    families
}

/// The standard process metrics, without the `switchboard_` prefix so that the usual
/// dashboards find them; none where `/proc` cannot be read.
#[cfg(target_os = "linux")]
fn process_families() -> Vec<MetricFamily> {
    let stats = match crate::process::stats::read() {
        Ok(stats) => stats,
        Err(error) => {
            tracing::debug!(%error, "no process metrics");
            return Vec::new();
        }
    };
    let unprefixed = |name: &str, help: &str, kind, value: f64| {
        let metric = if kind == MetricType::COUNTER {
            counter_value(value)
        } else {
            gauge_metric(&[], value)
        };
        let mut family = family(name, help, kind, vec![metric]);
        family.set_name(name.to_owned());
        family
    };
    vec![
        unprefixed(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
            MetricType::COUNTER,
            stats.cpu_seconds,
        ),
        unprefixed(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes.",
            MetricType::GAUGE,
            stats.resident_memory_bytes as f64,
        ),
        unprefixed(
            "process_open_fds",
            "Open file descriptors.",
            MetricType::GAUGE,
            stats.open_fds as f64,
        ),
        unprefixed(
            "process_max_fds",
            "The open-file limit (soft).",
            MetricType::GAUGE,
            stats.max_fds as f64,
        ),
        unprefixed(
            "process_start_time_seconds",
            "Start time of the process, in seconds since the Unix epoch.",
            MetricType::GAUGE,
            stats.start_time_seconds,
        ),
    ]
}

#[cfg(not(target_os = "linux"))]
fn process_families() -> Vec<MetricFamily> {
    Vec::new()
}

/// `switchboard_broker_state{broker, state}`: 1 for the broker's current state, 0 for the other.
fn broker_state(hub: &Hub) -> MetricFamily {
    let broker = hub.broker();
    let current = broker.status();
    let metrics = [BrokerStatus::Connected, BrokerStatus::Degraded]
        .into_iter()
        .map(|status| {
            let state = match status {
                BrokerStatus::Connected => "connected",
                BrokerStatus::Degraded => "degraded",
            };
            gauge_metric(
                &[("broker", broker.name()), ("state", state)],
                f64::from(u8::from(status == current)),
            )
        })
        .collect();
    family(
        "broker_state",
        "The broker's state: 1 for the current one (connected, degraded), 0 for the other.",
        MetricType::GAUGE,
        metrics,
    )
}

fn latency_family(snapshot: &LatencySnapshot) -> MetricFamily {
    let mut histogram = Histogram::default();
    histogram.set_sample_count(snapshot.count);
    histogram.set_sample_sum(snapshot.sum_seconds);
    histogram.set_bucket(
        snapshot
            .cumulative
            .iter()
            .map(|(bound, count)| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(*count);
                bucket
            })
            .collect(),
    );
    let mut metric = Metric::default();
    metric.set_histogram(histogram);
    family(
        "fanout_latency_seconds",
        "Time from the hub accepting a frame for delivery to its push onto the last local recipient's queue.",
        MetricType::HISTOGRAM,
        vec![metric],
    )
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![gauge_metric(&[], value)],
    )
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(format!("{PREFIX}{name}"));
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn counter_metric(labels: &[(&str, &str)], value: u64) -> Metric {
    let mut metric = counter_value(value as f64);
    metric.set_label(label_pairs(labels));
    metric
}

fn counter_value(value: f64) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    metric
}

fn gauge_metric(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::from_label(label_pairs(labels));
    metric.set_gauge(gauge);
    metric
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}
