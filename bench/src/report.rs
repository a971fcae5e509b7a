//! The results: one Markdown table (what a reader compares) and one JSON document (every raw
//! figure behind it, for whoever wants to plot or diff runs).

use serde_json::{Map, Value, json};

/// Whether a row meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Met,
    Missed,
    /// The row has no target; it is there for context.
    Info,
}

impl Outcome {
    pub fn of(met: bool) -> Self {
        if met { Self::Met } else { Self::Missed }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::Info => "",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub coordinator: String,
    pub sentinel: String,
    /// The side-by-side figure (coordinator / sentinel) or the distribution, as text.
    pub comparison: String,
    pub target: String,
    pub outcome: Outcome,
    /// The raw numbers behind the row.
    pub data: Value,
}

impl Row {
    pub fn new(measure: impl Into<String>) -> Self {
        Self {
            measure: measure.into(),
            coordinator: String::new(),
            sentinel: String::new(),
            comparison: String::new(),
            target: String::new(),
            outcome: Outcome::Info,
            data: Value::Null,
        }
    }

    pub fn coordinator(mut self, text: impl Into<String>) -> Self {
        self.coordinator = text.into();
        self
    }

    pub fn sentinel(mut self, text: impl Into<String>) -> Self {
        self.sentinel = text.into();
        self
    }

    pub fn comparison(mut self, text: impl Into<String>) -> Self {
        self.comparison = text.into();
        self
    }

    pub fn target(mut self, text: impl Into<String>, outcome: Outcome) -> Self {
        self.target = text.into();
        self.outcome = outcome;
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// Everything one run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Facts about the run (machine, versions, parameters).
    pub context: Map<String, Value>,
    pub sections: Vec<(String, Vec<Row>)>,
    /// Phases that failed, with their error; the run goes on without them.
    pub failures: Vec<(String, String)>,
}

impl Report {
    pub fn section(&mut self, title: &str, rows: Vec<Row>) {
        self.sections.push((title.to_owned(), rows));
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("# valkey-coordinator vs. a real sentinel\n\n");
        for (key, value) in &self.context {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("- {key}: {value}\n"));
        }
        out.push_str(
            "\n| section | measure | coordinator | sentinel | comparison | target | result |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for (title, rows) in &self.sections {
            for row in rows {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    cell(title),
                    cell(&row.measure),
                    cell(&row.coordinator),
                    cell(&row.sentinel),
                    cell(&row.comparison),
                    cell(&row.target),
                    row.outcome.label()
                ));
            }
        }
        if !self.failures.is_empty() {
            out.push_str("\nPhases that failed:\n\n");
            for (phase, error) in &self.failures {
                out.push_str(&format!("- {phase}: {}\n", error.replace('\n', " ")));
            }
        }
        out
    }

    pub fn json(&self) -> Value {
        let sections: Vec<Value> = self
            .sections
            .iter()
            .map(|(title, rows)| {
                json!({
                    "section": title,
                    "rows": rows.iter().map(|row| json!({
                        "measure": row.measure,
                        "coordinator": row.coordinator,
                        "sentinel": row.sentinel,
                        "comparison": row.comparison,
                        "target": row.target,
                        "result": format!("{:?}", row.outcome).to_lowercase(),
                        "data": row.data,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "context": self.context,
            "sections": sections,
            "failures": self.failures.iter()
                .map(|(phase, error)| json!({ "phase": phase, "error": error }))
                .collect::<Vec<_>>(),
        })
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
