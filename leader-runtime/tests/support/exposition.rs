//! Metrics as an independent parser reads them (`openmetrics-parser`, not our code), in either
//! exposition format, flattened to the samples a scraper stores.

use std::collections::BTreeMap;

use openmetrics_parser::{
    MetricNumber, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};

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

fn number(value: &MetricNumber) -> f64 {
    value.as_f64()
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
        let mut exposition = Exposition::default();
        for (name, family) in &parsed.families {
            let kind = match family.family_type {
                OpenMetricsType::Counter => "counter",
                OpenMetricsType::Gauge => "gauge",
                OpenMetricsType::Histogram => "histogram",
                other => panic!("unexpected type {other:?} of {name}"),
            };
            exposition.families.insert(name.clone(), kind.to_owned());
            for sample in family.iter_samples() {
                let labels = labels(sample.get_labelset().expect("a label set").iter());
                match &sample.value {
                    OpenMetricsValue::Gauge(value) => {
                        exposition.push(name, "", &labels, number(value))
                    }
                    OpenMetricsValue::Counter(counter) => {
                        exposition.push(name, "_total", &labels, number(&counter.value))
                    }
                    OpenMetricsValue::Histogram(histogram) => {
                        exposition.histogram(name, &labels, histogram)
                    }
                    other => panic!("unexpected value {other:?} of {name}"),
                }
            }
        }
        exposition
    }

    fn text(text: &str) -> Self {
        let parsed = openmetrics_parser::prometheus::parse_prometheus(text)
            .unwrap_or_else(|error| panic!("invalid 0.0.4 text: {error:?}\n{text}"));
        let mut exposition = Exposition::default();
        for (name, family) in &parsed.families {
            let kind = match family.family_type {
                PrometheusType::Counter => "counter",
                PrometheusType::Gauge => "gauge",
                PrometheusType::Histogram => "histogram",
                ref other => panic!("unexpected type {other:?} of {name}"),
            };
            exposition.families.insert(name.clone(), kind.to_owned());
            for sample in family.iter_samples() {
                let labels = labels(sample.get_labelset().expect("a label set").iter());
                match &sample.value {
                    PrometheusValue::Gauge(value) => {
                        exposition.push(name, "", &labels, number(value))
                    }
                    PrometheusValue::Counter(counter) => {
                        exposition.push(name, "", &labels, number(&counter.value))
                    }
                    PrometheusValue::Histogram(histogram) => {
                        exposition.histogram(name, &labels, histogram)
                    }
                    other => panic!("unexpected value {other:?} of {name}"),
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
        histogram: &openmetrics_parser::HistogramValue,
    ) {
        for bucket in &histogram.buckets {
            let mut labels = labels.clone();
            let le = if bucket.upper_bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bucket.upper_bound.to_string()
            };
            labels.insert("le".to_owned(), le);
            self.push(name, "_bucket", &labels, number(&bucket.count));
        }
        let sum = histogram.sum.as_ref().expect("a histogram sum");
        self.push(name, "_sum", labels, number(sum));
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

fn labels<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    pairs
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}
