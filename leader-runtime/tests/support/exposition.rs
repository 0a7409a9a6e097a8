//! Metrics as an independent parser reads them (`openmetrics-parser`, not our code), in either
//! exposition format, flattened to the samples a scraper stores.

use std::collections::BTreeMap;

use openmetrics_parser::{
    HistogramValue, MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType,
    PrometheusValue, RenderableMetricValue,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The families and samples of one exposition.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    /// Family name (as the format spells it) to its type.
    pub(crate) families: BTreeMap<String, String>,
    /// Every sample: the series name as stored (`_total`, `_bucket`, ... included), its labels,
    /// and its value.
    pub(crate) samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// One of the two formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub(crate) const ALL: [Format; 2] = [Format::OpenMetrics, Format::Text];

    /// The `Accept` header a scraper sends for this format.
    pub(crate) fn accept(self) -> &'static str {
        match self {
            // What Prometheus sends.
            Format::OpenMetrics => {
                "application/openmetrics-text;version=1.0.0;q=0.5,\
                 text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
            }
            Format::Text => "text/plain",
        }
    }

    /// The `Content-Type` of this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A sample's value, in either format.
enum Value<'a> {
    /// A gauge or counter, with the suffix of its series name.
    Plain(&'static str, f64),
    Histogram(&'a HistogramValue),
}

impl Exposition {
    /// Parses `text` in `format`; panics with the parser's complaint if it is not valid.
    pub(crate) fn parse(format: Format, text: &str) -> Self {
        match format {
            Format::OpenMetrics => Self::open_metrics(text),
            Format::Text => Self::text(text),
        }
    }

    fn open_metrics(text: &str) -> Self {
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(text)
            .unwrap_or_else(|error| panic!("invalid OpenMetrics: {error:?}\n{text}"));
        let kind = |kind: &OpenMetricsType| match kind {
            OpenMetricsType::Counter => "counter",
            OpenMetricsType::Gauge => "gauge",
            OpenMetricsType::Histogram => "histogram",
            other => panic!("unexpected type {other:?}"),
        };
        Self::flatten(&parsed, kind, |value| match value {
            OpenMetricsValue::Gauge(value) => Value::Plain("", value.as_f64()),
            // The family is named without `_total`, its samples with it.
            OpenMetricsValue::Counter(counter) => Value::Plain("_total", counter.value.as_f64()),
            OpenMetricsValue::Histogram(histogram) => Value::Histogram(histogram),
            other => panic!("unexpected value {other:?}"),
        })
    }

    fn text(text: &str) -> Self {
        let parsed = openmetrics_parser::prometheus::parse_prometheus(text)
            .unwrap_or_else(|error| panic!("invalid 0.0.4 text: {error:?}\n{text}"));
        let kind = |kind: &PrometheusType| match kind {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            other => panic!("unexpected type {other:?}"),
        };
        Self::flatten(&parsed, kind, |value| match value {
            PrometheusValue::Gauge(value) => Value::Plain("", value.as_f64()),
            PrometheusValue::Counter(counter) => Value::Plain("", counter.value.as_f64()),
            PrometheusValue::Histogram(histogram) => Value::Histogram(histogram),
            other => panic!("unexpected value {other:?}"),
        })
    }

    /// The families of `parsed` with the type `kind` names, and their samples as `value` reads
    /// them.
    fn flatten<T: Clone, V: RenderableMetricValue + Clone>(
        parsed: &MetricsExposition<T, V>,
        kind: impl Fn(&T) -> &'static str,
        value: impl Fn(&V) -> Value<'_>,
    ) -> Self {
        let mut exposition = Exposition::default();
        for (name, family) in &parsed.families {
            let kind = kind(&family.family_type);
            exposition.families.insert(name.clone(), kind.to_owned());
            for sample in family.iter_samples() {
                let labels = sample.get_labelset().expect("a label set");
                let labels = labels
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                match value(&sample.value) {
                    Value::Plain(suffix, value) => exposition.push(name, suffix, &labels, value),
                    Value::Histogram(histogram) => exposition.histogram(name, &labels, histogram),
                }
            }
        }
        exposition
    }

    fn push(&mut self, name: &str, suffix: &str, labels: &BTreeMap<String, String>, value: f64) {
        self.samples
            .push((format!("{name}{suffix}"), labels.clone(), value));
    }

    fn histogram(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        histogram: &HistogramValue,
    ) {
        for bucket in &histogram.buckets {
            let mut labels = labels.clone();
            let le = if bucket.upper_bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bucket.upper_bound.to_string()
            };
            labels.insert("le".to_owned(), le);
            self.push(name, "_bucket", &labels, bucket.count.as_f64());
        }
        let sum = histogram.sum.as_ref().expect("a histogram sum");
        self.push(name, "_sum", labels, sum.as_f64());
        let count = histogram.count.expect("a histogram count") as f64;
        self.push(name, "_count", labels, count);
    }

    /// The value of the sample `name` with exactly `labels`.
    pub(crate) fn sample(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", self.samples))
    }

    /// The value of the sample `name` with exactly `labels`, if there is one.
    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>();
        self.samples
            .iter()
            .find(|(sample, labels, _)| sample == name && *labels == wanted)
            .map(|(_, _, value)| *value)
    }

    /// The names of every series.
    pub(crate) fn series_names(&self) -> std::collections::BTreeSet<&str> {
        self.samples
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect()
    }
}

/// The `namespace` and `lease` labels of the test lease.
pub(crate) const LABELS: [(&str, &str); 2] =
    [("namespace", super::NAMESPACE), ("lease", super::LEASE)];

/// [`LABELS`] and one more.
pub(crate) fn with<'a>(extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut labels = LABELS.to_vec();
    labels.push(extra);
    labels
}

/// An application's registry with a metric of its own, `requests_total`, counting `requests`.
pub(crate) fn app_registry(requests: u64) -> Registry {
    let mut registry = Registry::default();
    let counter = Counter::<u64>::default();
    counter.inc_by(requests);
    registry.register("requests", "Requests served", counter);
    registry
}
