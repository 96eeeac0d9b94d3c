//! A misbehaving plugin for the host's fault tests. One component exports all three policy
//! worlds; its settings (`{"mode": "..."}`) choose what it does:
//!
//! | mode          | what it does                                              |
//! |---------------|-----------------------------------------------------------|
//! | `ok`          | a valid decision (category/queue from settings)           |
//! | `loop`        | spins forever (deadline)                                  |
//! | `alloc`       | allocates until it cannot (memory limit)                  |
//! | `recurse`     | recurses without bound (stack)                            |
//! | `panic`       | panics with a message naming the ticket                   |
//! | `crm-echo`    | returns the CRM record it sees as the rationale           |
//! | `crm-other`   | looks up a customer other than the ticket's (denied)      |
//! | `chatty`      | logs until the host-call limit stops it                   |
//! | `huge`        | returns a rationale over the output limit                 |
//! | `off-taxonomy`| returns a category the workspace does not know            |
//! | `forge`       | (reply) cites a real article with a quote it does not say |
//! | `unseen`      | (reply) cites an article the KB never returned            |
//! | `huge-error`  | returns a plugin-error with a 100 KB code, 1 MB message   |
//! | `panic-escape`| panics with terminal escape sequences in the message      |
//! | `stderr-flood`| writes 1 MB to stderr, then panics                        |
//! | `alloc-steps` | grows memory 64 KiB at a time until it cannot             |
//! | `nan`         | a NaN confidence                                          |
//! | `out-of-range`| a confidence of 1.5                                       |
//! | `bad-language`| the language "English" (not a tag)                        |
//! | `tickets-other`| asks for another customer's recent tickets (denied)      |
//! | `ticket-other`| reads the ticket id in settings `other` (another customer)|
//! | `ticket-echo` | returns the ticket fields it sees as the rationale        |
//! | `wasi`        | tries files, env, args, network, clock, randomness; says what it got |
//! | `by-ticket`   | panics, loops or decides depending on the ticket body     |
//! | `read-data`   | reads ranges of its data, then one outside it; says what it got |

use deskhost_sdk::{
    Citation, EscalationSummary, LabeledValue, PluginError, Priority, PriorityCall, ReplyDraft,
    ReplyProposal, Sentiment, SentimentCall, Severity, Ticket, TriageDecision, crm, helpdesk, kb,
    log, plugin_error,
};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    mode: String,
    category: Option<String>,
    queue: Option<String>,
    other: Option<String>,
}

fn settings() -> Result<Settings, PluginError> {
    deskhost_sdk::settings()
}

fn labeled(value: &str, confidence: f32) -> LabeledValue {
    LabeledValue {
        value: value.into(),
        confidence,
        evidence: vec![],
    }
}

fn decision(settings: &Settings, rationale: String) -> TriageDecision {
    TriageDecision {
        category: labeled(settings.category.as_deref().unwrap_or("billing"), 0.99),
        queue: labeled(settings.queue.as_deref().unwrap_or("billing"), 0.99),
        priority: PriorityCall {
            value: Priority::Medium,
            confidence: 0.99,
            evidence: vec![],
        },
        language: labeled("en", 0.99),
        sentiment: SentimentCall {
            value: Sentiment::Neutral,
            confidence: 0.9,
            evidence: vec![],
        },
        extra_fields: vec![],
        tags: vec![],
        escalate: None,
        rationale,
    }
}

// Deliberately unbounded: the host must stop it.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = [0u8; 256];
    next.copy_from_slice(pad);
    recurse(depth + 1, &mut next) + u64::from(next[0])
}

struct Probe;

impl deskhost_sdk::triage_world::Guest for Probe {
    fn triage(ticket: Ticket) -> Result<TriageDecision, PluginError> {
        let s = settings()?;
        match s.mode.as_str() {
            "ok" => Ok(decision(&s, format!("probe ok for {}", ticket.id))),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                let mut pad = [0u8; 256];
                Ok(decision(&s, format!("{}", recurse(0, &mut pad))))
            }
            "panic" => panic!("probe panicked on purpose while triaging {}", ticket.id),
            "crm-echo" => {
                let id = ticket
                    .customer_id
                    .clone()
                    .ok_or_else(|| plugin_error("no-customer", "ticket has no customer id"))?;
                let seen =
                    crm::lookup_customer(&id).map_err(|e| plugin_error("crm", format!("{e:?}")))?;
                Ok(decision(&s, format!("{seen:?}")))
            }
            "crm-other" => {
                let _ = crm::lookup_customer("C-SOMEONE-ELSE");
                Ok(decision(&s, "unreachable".into()))
            }
            "chatty" => {
                for i in 0..10_000 {
                    log::log(deskhost_sdk::LogLevel::Info, &format!("line {i}"));
                }
                Ok(decision(&s, "unreachable".into()))
            }
            "huge" => Ok(decision(&s, "x".repeat(2 << 20))),
            "off-taxonomy" => Ok(TriageDecision {
                category: labeled("made-up-category", 0.99),
                ..decision(&s, "off".into())
            }),
            "huge-error" => Err(plugin_error(&"c".repeat(100 * 1024), "m".repeat(1 << 20))),
            "panic-escape" => panic!("\x1b]0;owned\x07\x1b[2Jprobe {}", ticket.id),
            "stderr-flood" => {
                for _ in 0..1024 {
                    eprintln!("{}", "e".repeat(1023));
                }
                panic!("after the flood")
            }
            "alloc-steps" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 64 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "nan" => Ok(TriageDecision {
                category: labeled("billing", f32::NAN),
                ..decision(&s, "nan".into())
            }),
            "out-of-range" => Ok(TriageDecision {
                queue: labeled("billing", 1.5),
                ..decision(&s, "1.5".into())
            }),
            "bad-language" => Ok(TriageDecision {
                language: labeled("English", 0.9),
                ..decision(&s, "English".into())
            }),
            "tickets-other" => {
                let _ = helpdesk::recent_tickets("C-SOMEONE-ELSE", 5);
                Ok(decision(&s, "unreachable".into()))
            }
            "ticket-other" => {
                let other = s.other.clone().unwrap_or_default();
                let seen = helpdesk::get_ticket(&other);
                Ok(decision(&s, format!("{seen:?}")))
            }
            "ticket-echo" => Ok(decision(
                &s,
                format!(
                    "requester={:?} tags={:?} messages={:?} channel={:?} customer={:?} body_len={}",
                    ticket.requester,
                    ticket.tags,
                    ticket.messages.map(|m| m.len()),
                    ticket.channel,
                    ticket.customer_id,
                    ticket.body.len()
                ),
            )),
            "wasi" => Ok(decision(&s, wasi_report())),
            "read-data" => {
                use deskhost_sdk::config::read_data;
                let read = read_data(&[3, 0, 1000, 7], &[2, 1, 3, 0]);
                let outside = read_data(&[0, u64::MAX], &[1, 1]);
                Ok(decision(&s, format!("read {read:?}; outside {outside:?}")))
            }
            "by-ticket" => {
                if ticket.body.contains("PANIC") {
                    panic!("by-ticket panic on {}", ticket.id)
                } else if ticket.body.contains("LOOP") {
                    let mut x: u64 = 0;
                    loop {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                } else if ticket.body.contains("ERROR") {
                    Err(plugin_error("by-ticket", format!("error on {}", ticket.id)))
                } else {
                    Ok(decision(&s, format!("ok {}", ticket.id)))
                }
            }
            other => Err(plugin_error(
                "bad-mode",
                format!("unknown probe mode {other:?}"),
            )),
        }
    }
}

/// What the sandbox gives a plugin that reaches for the machine: each line `what=result`.
fn wasi_report() -> String {
    let mut out = Vec::new();
    out.push(format!(
        "read=/etc/passwd:{}",
        std::fs::read("/etc/passwd")
            .map_or_else(|e| format!("err({e})"), |b| format!("{} bytes", b.len()))
    ));
    out.push(format!(
        "write=/tmp/x:{}",
        std::fs::write("/tmp/deskhost-probe", b"x")
            .map_or_else(|e| format!("err({e})"), |()| "ok".into())
    ));
    out.push(format!(
        "readdir=.:{}",
        std::fs::read_dir(".").map_or_else(
            |e| format!("err({e})"),
            |d| format!("{} entries", d.count())
        )
    ));
    out.push(format!("env={}", std::env::vars().count()));
    out.push(format!("args={}", std::env::args().count()));
    out.push(format!(
        "tcp={}",
        std::net::TcpStream::connect("127.0.0.1:22")
            .map_or_else(|e| format!("err({e})"), |_| "connected".into())
    ));
    out.push(format!(
        "udp={}",
        std::net::UdpSocket::bind("127.0.0.1:0")
            .map_or_else(|e| format!("err({e})"), |_| "bound".into())
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    out.push(format!("clock_ms={now}"));
    let mut seed = std::collections::hash_map::RandomState::new();
    let _ = &mut seed;
    use std::hash::{BuildHasher, Hasher};
    let mut h = seed.build_hasher();
    h.write_u8(1);
    out.push(format!("random={:016x}", h.finish()));
    out.join(" ")
}

impl deskhost_sdk::reply_world::Guest for Probe {
    fn reply(ticket: Ticket, _triage: TriageDecision) -> Result<ReplyProposal, PluginError> {
        let s = settings()?;
        let hits = kb::search(&format!("{} {}", ticket.subject, ticket.body), None, 3)
            .map_err(|e| plugin_error("kb", format!("{e:?}")))?;
        let citations = match s.mode.as_str() {
            "forge" => {
                let hit = hits
                    .first()
                    .ok_or_else(|| plugin_error("no-hit", "nothing to forge from"))?;
                vec![Citation {
                    article_id: hit.article_id.clone(),
                    quote: "We always refund every charge within one hour, no questions asked."
                        .into(),
                }]
            }
            "unseen" => vec![Citation {
                article_id: "kb-never-returned".into(),
                quote: "A quote from an article this run never saw.".into(),
            }],
            _ => hits
                .iter()
                .take(1)
                .map(|h| Citation {
                    article_id: h.article_id.clone(),
                    quote: h.snippet.clone(),
                })
                .collect(),
        };
        Ok(ReplyProposal::Draft(ReplyDraft {
            body: "Probe reply.".into(),
            language: "en".into(),
            citations,
            confidence: 0.9,
        }))
    }
}

impl deskhost_sdk::escalation_world::Guest for Probe {
    fn escalate(
        _ticket: Ticket,
        triage: TriageDecision,
        _reply: Option<ReplyProposal>,
    ) -> Result<EscalationSummary, PluginError> {
        Ok(EscalationSummary {
            headline: "probe".into(),
            reason: "probe".into(),
            customer_context: vec![],
            steps_tried: vec![],
            verified_facts: vec![],
            open_questions: vec![],
            severity: Severity::Low,
            recommended_queue: triage.queue.value,
            next_step: "none".into(),
            summary: String::new(),
            citations: vec![],
            confidence: 0.5,
        })
    }
}

deskhost_sdk::export_triage!(Probe);
deskhost_sdk::export_reply!(Probe);
deskhost_sdk::export_escalation!(Probe);
