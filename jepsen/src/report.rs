//! A run's HTML page: the verdict, a timeline of every operation per client, the nemesis
//! windows, and throughput and latency over time. One self-contained file of inline SVG (no
//! scripts, nothing fetched), so it opens anywhere the run directory is copied to.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::history::{Event, EventType};

/// A time the nemesis held faults in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// What was in force, as the nemesis log names it.
    pub fault: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What the page says above its charts.
pub struct Header<'a> {
    pub title: &'a str,
    pub verdict: &'a str,
    /// The run's summary, shown as is.
    pub summary: &'a serde_json::Value,
}

/// One operation as drawn: from its invocation to its completion.
#[derive(Debug, PartialEq)]
struct Span {
    process: u64,
    start_ns: u64,
    end_ns: u64,
    kind: EventType,
    label: String,
}

/// Pairs each invocation with its process's next event; an operation never completed (the
/// run was interrupted) is drawn to the end of the run as `info`.
fn spans(events: &[Event]) -> Vec<Span> {
    let mut open: HashMap<u64, &Event> = HashMap::new();
    let mut spans = Vec::new();
    let end = events.iter().filter_map(|e| e.time).max().unwrap_or(0);
    let label = |invoke: &Event, done: Option<&Event>| {
        let mut label = format!("process {} {}", invoke.process, invoke.f);
        if let Some(key) = &invoke.key {
            let _ = write!(label, " key {key}");
        }
        let _ = write!(label, " {}", invoke.value);
        match done {
            Some(done) => {
                let _ = write!(label, " → {} {}", done.kind.keyword(), done.value);
                if let Some(error) = &done.error {
                    let _ = write!(label, " ({error})");
                }
            }
            None => label.push_str(" → never completed"),
        }
        label
    };
    for event in events {
        if event.kind == EventType::Invoke {
            open.insert(event.process, event);
        } else if let Some(invoke) = open.remove(&event.process) {
            spans.push(Span {
                process: invoke.process,
                start_ns: invoke.time.unwrap_or(0),
                end_ns: event.time.unwrap_or(end),
                kind: event.kind,
                label: label(invoke, Some(event)),
            });
        }
    }
    let mut unfinished: Vec<&Event> = open.into_values().collect();
    unfinished.sort_by_key(|e| e.time);
    for invoke in unfinished {
        spans.push(Span {
            process: invoke.process,
            start_ns: invoke.time.unwrap_or(0),
            end_ns: end,
            kind: EventType::Info,
            label: label(invoke, None),
        });
    }
    spans
}

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const LANE: f64 = 12.0;
const CHART: f64 = 160.0;

/// Maps nanoseconds since the start to x.
struct Scale {
    total_ns: f64,
}

impl Scale {
    fn x(&self, ns: u64) -> f64 {
        LEFT + WIDTH * (ns as f64 / self.total_ns)
    }
}

fn color(kind: EventType) -> &'static str {
    match kind {
        EventType::Ok => "#43a047",
        EventType::Fail => "#e53935",
        EventType::Info | EventType::Invoke => "#fb8c00",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for a run with `clients` client threads (a process's lane is its number modulo
/// that; the harness's final reads and writes get a lane of their own).
pub fn render(header: &Header, events: &[Event], windows: &[Window], clients: u64) -> String {
    let spans = spans(events);
    let last = spans
        .iter()
        .map(|s| s.end_ns)
        .chain(windows.iter().map(|w| w.end_ns))
        .max()
        .unwrap_or(0);
    let scale = Scale {
        total_ns: last.max(1) as f64,
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:20px}}pre{{background:#f4f4f4;padding:8px;\
         white-space:pre-wrap}}svg{{display:block;margin-bottom:24px}}text{{font-size:11px}}</style>\
         </head><body><h1>{title}</h1><h2>Verdict: {verdict}</h2><pre>{summary}</pre>",
        title = escape(header.title),
        verdict = escape(header.verdict),
        summary = escape(&serde_json::to_string_pretty(header.summary).unwrap_or_default()),
    );
    let _ = write!(
        page,
        "<p>Operations: <span style=\"color:{}\">■ ok</span> <span style=\"color:{}\">■ fail</span> \
         <span style=\"color:{}\">■ info</span>; shaded: nemesis windows. Hover an operation or a \
         window for details.</p>",
        color(EventType::Ok),
        color(EventType::Fail),
        color(EventType::Info)
    );
    timeline(&mut page, &spans, windows, &scale, clients);
    throughput(&mut page, &spans, windows, &scale);
    latency(&mut page, &spans, windows, &scale);
    page.push_str("</body></html>\n");
    page
}

/// The lane of a process: its client thread, or the last lane for the final checks.
fn lane(process: u64, clients: u64) -> u64 {
    if process >= 1_000_000 {
        clients
    } else {
        process % clients.max(1)
    }
}

fn svg_open(page: &mut String, title: &str, height: f64) {
    let _ = write!(
        page,
        "<h3>{title}</h3><svg width=\"{}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <g transform=\"translate(0,8)\">",
        LEFT + WIDTH + 20.0,
        height + 36.0
    );
}

fn svg_close(page: &mut String) {
    page.push_str("</g></svg>");
}

/// Shaded nemesis windows and the time axis under a chart of `height`.
fn frame(page: &mut String, windows: &[Window], scale: &Scale, height: f64) {
    for window in windows {
        let (x0, x1) = (scale.x(window.start_ns), scale.x(window.end_ns));
        let _ = write!(
            page,
            "<rect x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#3949ab\" \
             fill-opacity=\"0.10\"><title>{}</title></rect>",
            (x1 - x0).max(1.0),
            escape(&window.fault)
        );
    }
    let seconds = scale.total_ns / 1e9;
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]
        .into_iter()
        .find(|step| seconds / step <= 15.0)
        .unwrap_or(300.0);
    let mut t = 0.0;
    while t <= seconds {
        let x = scale.x((t * 1e9) as u64);
        let _ = write!(
            page,
            "<line x1=\"{x:.1}\" y1=\"{height}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#333\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{t}s</text>",
            height + 4.0,
            height + 16.0
        );
        t += step;
    }
}

fn timeline(page: &mut String, spans: &[Span], windows: &[Window], scale: &Scale, clients: u64) {
    let height = (clients + 1) as f64 * LANE;
    svg_open(page, "Operations by client", height);
    frame(page, windows, scale, height);
    for client in 0..=clients {
        let name = if client == clients {
            "final".to_string()
        } else {
            format!("client {client}")
        };
        let _ = write!(
            page,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>",
            LEFT - 6.0,
            client as f64 * LANE + LANE - 3.0
        );
    }
    for span in spans {
        let x0 = scale.x(span.start_ns);
        let x1 = scale.x(span.end_ns);
        let _ = write!(
            page,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
             <title>{} ({:.1} ms)</title></rect>",
            lane(span.process, clients) as f64 * LANE + 1.0,
            (x1 - x0).max(0.8),
            LANE - 3.0,
            color(span.kind),
            escape(&span.label),
            span.end_ns.saturating_sub(span.start_ns) as f64 / 1e6
        );
    }
    svg_close(page);
}

/// The bucket width for per-interval series: a second, or more on long runs.
fn bucket_ns(scale: &Scale) -> u64 {
    (scale.total_ns as u64 / 300).max(1_000_000_000)
}

fn polyline(page: &mut String, points: &[(f64, f64)], stroke: &str, name: &str) {
    let mut list = String::new();
    for (x, y) in points {
        let _ = write!(list, "{x:.1},{y:.1} ");
    }
    let _ = write!(
        page,
        "<polyline points=\"{list}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.5\">\
         <title>{name}</title></polyline>"
    );
}

fn y_label(page: &mut String, y: f64, text: &str) {
    let _ = write!(
        page,
        "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{text}</text>\
         <line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
        LEFT - 6.0,
        y + 4.0,
        LEFT + WIDTH
    );
}

fn throughput(page: &mut String, spans: &[Span], windows: &[Window], scale: &Scale) {
    let bucket = bucket_ns(scale);
    let buckets = (scale.total_ns as u64 / bucket + 1) as usize;
    let kinds = [EventType::Ok, EventType::Fail, EventType::Info];
    let mut counts = vec![[0u64; 3]; buckets];
    for span in spans {
        let at = ((span.end_ns / bucket) as usize).min(buckets - 1);
        let kind = kinds.iter().position(|k| *k == span.kind).unwrap_or(2);
        counts[at][kind] += 1;
    }
    let per_second = |count: u64| count as f64 * 1e9 / bucket as f64;
    let peak = counts
        .iter()
        .flatten()
        .map(|&c| per_second(c))
        .fold(1.0, f64::max);
    svg_open(page, "Throughput (completions per second)", CHART);
    frame(page, windows, scale, CHART);
    for fraction in [0.0, 0.5, 1.0] {
        y_label(
            page,
            CHART - CHART * fraction,
            &format!("{:.0}", peak * fraction),
        );
    }
    for (i, kind) in kinds.iter().enumerate() {
        let points: Vec<(f64, f64)> = counts
            .iter()
            .enumerate()
            .map(|(b, c)| {
                let x = scale.x(b as u64 * bucket + bucket / 2);
                (x, CHART - CHART * per_second(c[i]) / peak)
            })
            .collect();
        polyline(page, &points, color(*kind), kind.keyword());
    }
    svg_close(page);
}

fn latency(page: &mut String, spans: &[Span], windows: &[Window], scale: &Scale) {
    let bucket = bucket_ns(scale);
    let buckets = (scale.total_ns as u64 / bucket + 1) as usize;
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); buckets];
    for span in spans.iter().filter(|s| s.kind == EventType::Ok) {
        let at = ((span.end_ns / bucket) as usize).min(buckets - 1);
        latencies[at].push(span.end_ns.saturating_sub(span.start_ns) as f64 / 1e6);
    }
    // Milliseconds on a log scale from 0.1 ms to the slowest operation.
    let slowest = latencies.iter().flatten().copied().fold(1.0, f64::max);
    let (low, high) = (0.1f64.log10(), slowest.log10().max(0.0) + 0.1);
    let y = |ms: f64| CHART - CHART * ((ms.max(0.1).log10() - low) / (high - low));
    svg_open(page, "Latency of ok operations (ms, log scale)", CHART);
    frame(page, windows, scale, CHART);
    let mut tick = 0.1;
    while tick <= slowest * 10.0 && tick.log10() <= high {
        y_label(page, y(tick), &format!("{tick}"));
        tick *= 10.0;
    }
    for (quantile, stroke) in [(0.5, "#1e88e5"), (0.99, "#8e24aa"), (1.0, "#757575")] {
        let points: Vec<(f64, f64)> = latencies
            .iter_mut()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(b, l)| {
                l.sort_by(f64::total_cmp);
                let at = ((l.len() - 1) as f64 * quantile).round() as usize;
                (scale.x(b as u64 * bucket + bucket / 2), y(l[at]))
            })
            .collect();
        let name = match quantile {
            q if q >= 1.0 => "max".to_string(),
            q => format!("p{}", q * 100.0),
        };
        polyline(page, &points, stroke, &name);
    }
    svg_close(page);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Value;

    fn event(process: u64, kind: EventType, f: &str, value: Value, ms: u64) -> Event {
        Event {
            process,
            kind,
            f: f.to_string(),
            key: Some("3".to_string()),
            value,
            time: Some(ms * 1_000_000),
            error: None,
        }
    }

    fn history() -> Vec<Event> {
        vec![
            event(0, EventType::Invoke, "write", Value::Int(1), 0),
            event(1, EventType::Invoke, "read", Value::Nil, 100),
            event(0, EventType::Ok, "write", Value::Int(1), 200),
            event(1, EventType::Info, "read", Value::Nil, 1500),
            event(7, EventType::Invoke, "write", Value::Int(2), 1600),
        ]
    }

    #[test]
    fn every_operation_is_a_span_from_invocation_to_completion() {
        let spans = spans(&history());
        assert_eq!(spans.len(), 3);
        assert_eq!(
            (spans[0].process, spans[0].start_ns, spans[0].end_ns),
            (0, 0, 200_000_000)
        );
        assert_eq!(spans[0].kind, EventType::Ok);
        assert_eq!(spans[1].kind, EventType::Info);
        // Never completed: drawn to the end, as unknown.
        assert_eq!(
            (spans[2].start_ns, spans[2].end_ns, spans[2].kind),
            (1_600_000_000, 1_600_000_000, EventType::Info)
        );
        assert!(spans[2].label.contains("never completed"));
    }

    #[test]
    fn the_page_shows_the_verdict_each_operation_and_each_window() {
        let summary = serde_json::json!({"operations": 3});
        let windows = [Window {
            fault: "partition n1 <ring>".to_string(),
            start_ns: 50_000_000,
            end_ns: 1_000_000_000,
        }];
        let page = render(
            &Header {
                title: "register, 3 nodes",
                verdict: "invalid: key \"3\" is not linearizable",
                summary: &summary,
            },
            &history(),
            &windows,
            6,
        );
        assert!(page.contains("Verdict: invalid: key &quot;3&quot; is not linearizable"));
        assert!(page.contains("<title>partition n1 &lt;ring&gt;</title>"));
        assert_eq!(
            page.matches("<title>process ").count(),
            3,
            "one per operation"
        );
        assert!(page.contains("process 0 write key 3 1 → ok 1"));
        assert!(page.contains("Throughput") && page.contains("Latency"));
        assert!(page.ends_with("</html>\n"));
    }
}
