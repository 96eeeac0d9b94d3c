//! The review UI's pages. Every interpolated value is escaped by maud; text that came from a
//! ticket, a plugin or a reviewer also goes through the sanitizer first, so a control or bidi
//! character shows as a visible escape instead of reordering what a reviewer reads.

use super::{ActionForm, OutboxFilter, QueueFilter, url_component};
use axum::http::StatusCode;
use deskhost_engine::sanitize;
use deskhost_engine::sessions::UiSession;
use deskhost_protocol::api::ReviewDetail;
use deskhost_protocol::config::Taxonomy;
use deskhost_protocol::digest::parse_rfc3339_secs;
use deskhost_protocol::gate::Effect;
use deskhost_protocol::proposal::{
    Citation, Evidence, Fact, Labeled, ReplyProposal, TriageProposal,
};
use deskhost_protocol::review::{Backlog, ReviewReport};
use deskhost_protocol::run::{ReviewItem, ReviewStatus};
use maud::{DOCTYPE, Markup, html};
use serde::Serialize;

/// Multi-line text from outside, with hidden characters made visible.
fn text(s: &str) -> String {
    sanitize::terminal(s).into_owned()
}

/// One-line text from outside (ids, names, subjects).
fn line(s: &str) -> String {
    sanitize::field(s).into_owned()
}

/// The wire name of a serde enum value (`low-confidence`, `kb-article`, `urgent`).
pub(crate) fn tag<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn percent(confidence: f64) -> String {
    format!("{:.0}%", (confidence * 100.0).clamp(0.0, 100.0))
}

/// How long ago an RFC 3339 time was, short: `40s`, `12m`, `3h`, `2d`.
fn age(at: &str, now: i64) -> String {
    let Some(then) = parse_rfc3339_secs(at) else {
        return line(at);
    };
    let s = (now - then).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn item_href(id: &str) -> String {
    format!("/ui/items/{}", url_component(id))
}

fn status_badge(status: ReviewStatus) -> Markup {
    let name = status.as_str();
    html! { span class=(format!("badge status-{name}")) { (name) } }
}

fn layout(title: &str, session: Option<&UiSession>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · deskhost review" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/queue" { "deskhost " span { "review" } }
                    @if let Some(s) = session {
                        nav {
                            a href="/ui/queue" { "Queue" }
                            a href="/ui/report" { "Report" }
                            a href="/ui/outbox" { "Outbox" }
                        }
                        div.who {
                            "Signed in as " strong #who { (line(&s.token.name)) }
                            " (" (s.token.role.as_str()) ")"
                            form.inline method="post" action="/ui/sign-out" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
                @if session.is_some() {
                    footer #keys {
                        "Keys: " kbd { "j" } " / " kbd { "k" } " next / previous · "
                        kbd { "o" } " open · " kbd { "a" } " approve · " kbd { "r" } " reject · "
                        kbd { "u" } " back to the queue"
                    }
                }
            }
        }
    }
}

/// A page that says what went wrong and what to do.
pub(crate) fn error(session: Option<&UiSession>, status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        title,
        session,
        html! {
            h1 { (title) }
            p.error role="alert" { (text(message)) }
            p { a href="/ui/queue" { "Back to the queue" } }
        },
    )
}

pub(crate) fn sign_in(refused: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.signin {
                h1 { "Sign in to review" }
                p { "Paste an API token of the reviewer or admin role. "
                    code { "deskhost token create --name YOU --role reviewer" } " makes one." }
                @if let Some(m) = refused {
                    p.error role="alert" { (m) }
                }
                form method="post" action="/ui/sign-in" {
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus
                        placeholder="dh_…";
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

fn reasons(item: &ReviewItem) -> Markup {
    html! {
        @for r in &item.reasons {
            @let code = tag(&r.code);
            span class=(format!("badge reason reason-{code}")) title=(text(&r.detail)) { (code) }
            " "
        }
    }
}

pub(crate) fn queue(
    session: &UiSession,
    filter: &QueueFilter,
    rows: &[(ReviewItem, String)],
    done: Option<&ReviewItem>,
    backlog: &Backlog,
    now: i64,
) -> Markup {
    let selected = |value: &str, current: &str| value == current;
    let status = if filter.status.is_empty() {
        "open"
    } else {
        filter.status.as_str()
    };
    layout(
        "Queue",
        Some(session),
        html! {
            div.heading {
                h1 { "Review queue" }
                p.summary #backlog {
                    (backlog.open) " open"
                    @if let Some(oldest) = &backlog.oldest { ", the oldest waiting " (age(oldest, now)) }
                }
            }
            @if let Some(d) = done {
                p.notice role="status" #done {
                    "Review item " a href=(item_href(&d.id)) { (line(&d.id)) }
                    " (ticket " (line(&d.ticket_id)) ") "
                    @match (d.status, &d.decided_by, &d.assignee) {
                        (ReviewStatus::Open, _, Some(a)) => { "is assigned to " strong { (line(a)) } "." }
                        (s, Some(by), _) => { "is " strong { (s.as_str()) } " by " (line(by)) "." }
                        (s, None, _) => { "is " (s.as_str()) "." }
                    }
                }
            }
            form.filters method="get" action="/ui/queue" {
                label { "Status "
                    select name="status" {
                        @for s in ["open", "approved", "rejected", "all"] {
                            option value=(s) selected[selected(s, status)] { (s) }
                        }
                    }
                }
                label { "Reason "
                    select name="reason" {
                        option value="" { "any" }
                        @for r in REASONS {
                            option value=(r) selected[selected(r, &filter.reason)] { (r) }
                        }
                    }
                }
                label { "Queue " input name="queue" value=(filter.queue) size="12"; }
                label { "Plugin " input name="plugin" value=(filter.plugin) size="16" placeholder="id@version"; }
                label { "Assignee " input name="assignee" value=(filter.assignee) size="10"; }
                button type="submit" { "Filter" }
                " " a href="/ui/queue" { "Clear" }
            }
            @if rows.is_empty() {
                p.empty { "Nothing here: no review item matches." }
            } @else {
                table.queue #queue {
                    thead { tr {
                        th { "Why" } th { "Ticket" } th { "Subject" } th { "Proposed" }
                        th.num { "Conf." } th.num { "Age" } th { "Assignee" } th { "Status" } th {}
                    } }
                    tbody {
                        @for (item, subject) in rows {
                            @let href = item_href(&item.id);
                            tr.row data-href=(href) data-id=(item.id) {
                                td { (reasons(item)) }
                                td.ticket { a.open href=(href) { (line(&item.ticket_id)) " v" (item.ticket_version) } }
                                td.subject { (line(subject)) }
                                td {
                                    @if let Some(t) = &item.payload.triage {
                                        (line(&t.category.value)) " · " (line(&t.queue.value)) " · "
                                        span class=(format!("prio prio-{}", tag(&t.priority.value))) { (tag(&t.priority.value)) }
                                    } @else { span.muted { "no triage" } }
                                }
                                td.num {
                                    @if let Some(t) = &item.payload.triage { (percent(t.confidence())) }
                                }
                                td.num title=(item.created_at) { (age(&item.created_at, now)) }
                                td { @if let Some(a) = &item.assignee { (line(a)) } }
                                td { (status_badge(item.status)) }
                                td {
                                    @if item.status == ReviewStatus::Open {
                                        form.quick.inline method="post" action=(href) {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="action" value="approve";
                                            button type="submit" title="Approve as proposed (a)" { "Approve" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

const REASONS: [&str; 9] = [
    "escalation",
    "risk-category",
    "risk-customer-tier",
    "risk-negative-sentiment",
    "plugin-fault",
    "invalid-proposal",
    "low-confidence",
    "empty-ticket",
    "reply-approval",
];

fn ticket_meta(t: &deskhost_protocol::records::TicketInput) -> Markup {
    let mut parts: Vec<Markup> = Vec::new();
    if let Some(c) = &t.channel {
        parts.push(html! { (line(c)) });
    }
    if let Some(l) = &t.language {
        parts.push(html! { (line(l)) });
    }
    if let Some(c) = &t.customer_id {
        parts.push(html! { "customer " code { (line(c)) } });
    }
    if let Some(r) = &t.requester {
        parts.push(html! { "from " (line(r)) });
    }
    html! {
        @for (i, p) in parts.iter().enumerate() {
            @if i > 0 { " · " }
            (p)
        }
    }
}

/// The open items before and after this one, for j and k.
pub(crate) struct Neighbours {
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// Evidence, grouped by where it comes from: `model model:x: "How" · "How do"`.
fn evidence(items: &[Evidence]) -> Markup {
    let mut groups: Vec<(&Evidence, Vec<&str>)> = Vec::new();
    for e in items {
        match groups
            .iter_mut()
            .find(|(g, _)| g.source == e.source && g.reference == e.reference)
        {
            Some((_, quotes)) => quotes.push(&e.quote),
            None => groups.push((e, vec![e.quote.as_str()])),
        }
    }
    html! {
        @for (e, quotes) in &groups {
            div.evidence {
                span.source { (tag(&e.source)) }
                @if !e.reference.is_empty() { " " code { (line(&e.reference)) } }
                @for (i, q) in quotes.iter().filter(|q| !q.is_empty()).enumerate() {
                    @if i > 0 { " · " }
                    " " q { (text(q)) }
                }
            }
        }
    }
}

fn labeled_row<T: Serialize>(name: &str, l: &Labeled<T>) -> Markup {
    let value = match serde_json::to_value(&l.value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    };
    html! {
        tr {
            th scope="row" { (name) }
            td.value { (line(&value)) }
            td.num { (confidence_bar(l.confidence)) }
            td { (evidence(&l.evidence)) }
        }
    }
}

fn confidence_bar(c: f64) -> Markup {
    let p = percent(c);
    html! {
        span.conf { (p) meter min="0" max="1" low="0.5" high="0.8" optimum="1" value=(format!("{c:.3}")) {} }
    }
}

/// Citations, linked to the cited article's text further down the page when it is there.
fn citations(list: &[Citation], articles: &[deskhost_protocol::records::ArticleRecord]) -> Markup {
    html! {
        @if !list.is_empty() {
            ol.citations {
                @for c in list {
                    li {
                        @match articles.iter().position(|a| a.id == c.article_id) {
                            Some(i) => { a href=(format!("#cited-{i}")) { (line(&c.article_id)) } }
                            None => { code { (line(&c.article_id)) } " " span.muted { "(no longer in the knowledge base)" } }
                        }
                        @if !c.quote.is_empty() { blockquote { (text(&c.quote)) } }
                    }
                }
            }
        }
    }
}

fn facts(title: &str, list: &[Fact]) -> Markup {
    html! {
        @if !list.is_empty() {
            h4 { (title) }
            ul.facts {
                @for f in list {
                    li {
                        (text(&f.statement)) " "
                        span.source { (tag(&f.source)) }
                        @if !f.reference.is_empty() { " " code { (line(&f.reference)) } }
                        @if !f.quote.is_empty() { blockquote { (text(&f.quote)) } }
                    }
                }
            }
        }
    }
}

fn effect(e: &Effect) -> Markup {
    html! {
        @match e {
            Effect::Category { value } => { "set category to " strong { (line(value)) } }
            Effect::Queue { value } => { "route to queue " strong { (line(value)) } }
            Effect::Priority { value } => { "set priority to " strong { (line(value)) } }
            Effect::Language { value } => { "set language to " strong { (line(value)) } }
            Effect::Tags { values } => {
                "add tags "
                @for v in values { code { (line(v)) } " " }
            }
            Effect::InternalNote { body } => { "add an internal note" blockquote { (text(body)) } }
        }
    }
}

/// A `<select>` of the taxonomy's values (a text field when the taxonomy has none).
fn choice(name: &str, options: &[String], current: &str) -> Markup {
    html! {
        @if options.is_empty() {
            input #(format!("edit-{name}")) name=(name) value=(current);
        } @else {
            select #(format!("edit-{name}")) name=(name) {
                @if !options.iter().any(|o| o == current) {
                    option value=(current) selected { (line(current)) }
                }
                @for o in options {
                    option value=(o) selected[o == current] { (line(o)) }
                }
            }
        }
    }
}

pub(crate) fn item(
    session: &UiSession,
    d: &ReviewDetail,
    taxonomy: &Taxonomy,
    around: Neighbours,
    refused: Option<(&ActionForm, &str)>,
    now: i64,
) -> Markup {
    let item = &d.item;
    let p = &item.payload;
    let draft = match &p.reply {
        Some(ReplyProposal::Draft(d)) => Some(d),
        _ => None,
    };
    let proposed = |f: fn(&TriageProposal) -> String| p.triage.as_ref().map(f).unwrap_or_default();
    let sent = refused.map(|(f, _)| f);
    let value = |from_form: Option<&String>, fallback: String| match from_form {
        Some(v) if !v.is_empty() => v.clone(),
        _ => fallback,
    };
    let category = value(
        sent.map(|f| &f.category),
        proposed(|t| t.category.value.clone()),
    );
    let queue = value(sent.map(|f| &f.queue), proposed(|t| t.queue.value.clone()));
    let priority = value(
        sent.map(|f| &f.priority),
        proposed(|t| tag(&t.priority.value)),
    );
    let language = value(
        sent.map(|f| &f.language),
        proposed(|t| t.language.value.clone()),
    );
    let reply = value(
        sent.map(|f| &f.reply),
        draft.map(|d| d.body.clone()).unwrap_or_default(),
    );
    let title = format!("Ticket {} v{}", line(&item.ticket_id), item.ticket_version);
    layout(
        &title,
        Some(session),
        html! {
            nav.crumbs {
                a #up href="/ui/queue" { "← Queue" }
                @if let Some(id) = &around.prev { a #prev href=(item_href(id)) { "‹ Previous" } }
                @if let Some(id) = &around.next { a #next href=(item_href(id)) { "Next ›" } }
            }
            div.heading {
                h1 { (title) " " (status_badge(item.status)) }
                p.meta {
                    "Item " code #item-id { (line(&item.id)) } " · run " code { (line(&item.run_id)) }
                    " · waiting " span title=(item.created_at) { (age(&item.created_at, now)) }
                    @if let Some(a) = &item.assignee { " · assigned to " strong { (line(a)) } }
                    @if let Some(by) = &item.decided_by { " · " (item.status.as_str()) " by " strong #decided-by { (line(by)) } }
                }
            }
            @if let Some((_, message)) = refused {
                p.error role="alert" #refused { (text(message)) }
            }
            section.reasons {
                h2 { "Why it needs a person" }
                ul {
                    @for r in &item.reasons {
                        li { span class=(format!("badge reason reason-{}", tag(&r.code))) { (tag(&r.code)) } " " (text(&r.detail)) }
                    }
                }
            }
            div.columns {
                div.left {
                    section.ticket {
                        h2 { "Ticket" }
                        @match &d.ticket {
                            Some(t) => {
                                h3.subject #subject { (line(&t.subject)) }
                                p.meta { (ticket_meta(t)) }
                                @if !t.tags.is_empty() {
                                    p { @for tg in &t.tags { span.tag { (line(tg)) } " " } }
                                }
                                pre.body #body { (text(&t.body)) }
                                @for m in &t.messages {
                                    div.message {
                                        p.meta { (line(&m.author)) @if let Some(at) = &m.sent_at { " · " (line(at)) } }
                                        pre.body { (text(&m.body)) }
                                    }
                                }
                            }
                            None => { p.muted { "The ticket version is not in the store." } }
                        }
                    }
                @if !d.articles.is_empty() {
                    section.articles {
                        h2 { "Cited articles" }
                        @for (i, a) in d.articles.iter().enumerate() {
                            article #(format!("cited-{i}")) {
                                h3 { (line(&a.title)) }
                                p.meta { code { (line(&a.id)) } " v" (a.version) " · " (line(&a.collection)) " · " (line(&a.language)) }
                                pre.body { (text(&a.body)) }
                            }
                        }
                    }
                }
                }
                div.right {
                @if item.status == ReviewStatus::Open {
                    section.actions #actions {
                        h2 { "Decide" }
                        form #approve method="post" action=(item_href(&item.id)) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="action" value="approve";
                            div.grid {
                                label { "Category " (choice("category", &taxonomy.categories, &category)) }
                                label { "Queue " (choice("queue", &taxonomy.queues, &queue)) }
                                label { "Priority " (choice("priority", &["low".into(), "medium".into(), "high".into(), "urgent".into()], &priority)) }
                                label { "Language " input #edit-language name="language" value=(language) size="6"; }
                            }
                            label.block { "Reply"
                                textarea #edit-reply name="reply" rows="7" placeholder="Write a reply to send one (optional)" { (reply) }
                            }
                            p.hint { "Fields you change are stored as your edits beside the proposal." }
                            button.primary type="submit" { "Approve" } " " kbd { "a" }
                        }
                        div.side {
                            form #reject method="post" action=(item_href(&item.id)) {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="action" value="reject";
                                label.block { "Reason"
                                    textarea #reason name="reason" rows="2" required { (sent.map(|f| f.reason.as_str()).unwrap_or("")) }
                                }
                                button.danger type="submit" { "Reject" } " " kbd { "r" }
                            }
                            form #assign method="post" action=(item_href(&item.id)) {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="action" value="assign";
                                label { "Assign to " input #assign-to name="to" size="12" value=(sent.map(|f| f.to.as_str()).unwrap_or("")) required; }
                                " " button type="submit" { "Assign" }
                            }
                        }
                    }
                }
                    section.proposals {
                        h2 { "Proposals" }
                        @if let Some(t) = &p.triage {
                            h3 { "Triage" }
                            table.fields {
                                thead { tr { th { "Field" } th { "Proposed" } th.num { "Confidence" } th { "Evidence" } } }
                                tbody {
                                    (labeled_row("category", &t.category))
                                    (labeled_row("queue", &t.queue))
                                    (labeled_row("priority", &t.priority))
                                    (labeled_row("language", &t.language))
                                    (labeled_row("sentiment", &t.sentiment))
                                    @for (name, l) in &t.fields { (labeled_row(&line(name), l)) }
                                }
                            }
                            @if !t.tags.is_empty() {
                                p { "Tags: " @for tg in &t.tags { span.tag { (line(tg)) } " " } }
                            }
                            @if let Some(e) = &t.escalate {
                                div.escalate {
                                    p { "Asks to escalate: " code { (line(&e.code)) } " " (text(&e.detail)) }
                                    (evidence(&e.evidence))
                                }
                            }
                            @if !t.rationale.is_empty() { p.rationale { (text(&t.rationale)) } }
                        }
                        @match &p.reply {
                            Some(ReplyProposal::Draft(r)) => {
                                h3 { "Reply draft " (confidence_bar(r.confidence)) }
                                pre.body.reply #draft { (text(&r.body)) }
                                p.meta { "language " (line(&r.language)) }
                                (citations(&r.citations, &d.articles))
                            }
                            Some(ReplyProposal::Abstain(a)) => {
                                h3 { "Reply" }
                                p { "No draft: " code { (line(&a.reason)) } " " (text(&a.detail)) }
                            }
                            None => {}
                        }
                        @if let Some(e) = &p.escalation {
                            h3 { "Escalation " (confidence_bar(e.confidence)) }
                            div.packet {
                                p { strong { (text(&e.headline)) } " " span.badge { (tag(&e.severity)) } }
                                p { (text(&e.reason)) }
                                p { "Recommended queue " strong { (line(&e.recommended_queue)) } "; next step: " (text(&e.next_step)) }
                                @if !e.summary.is_empty() { p { (text(&e.summary)) } }
                                (facts("Customer context", &e.customer_context))
                                (facts("Verified facts", &e.verified_facts))
                                @if !e.steps_tried.is_empty() {
                                    h4 { "Steps tried" } ul { @for s in &e.steps_tried { li { (text(s)) } } }
                                }
                                @if !e.open_questions.is_empty() {
                                    h4 { "Open questions" } ul { @for s in &e.open_questions { li { (text(s)) } } }
                                }
                                (citations(&e.citations, &d.articles))
                            }
                        }
                        @if !p.held_effects.is_empty() {
                            h3 { "Held effects (applied on approval)" }
                            ul.effects { @for e in &p.held_effects { li { (effect(e)) } } }
                        }
                        @if !p.faults.is_empty() {
                            h3 { "Faults" }
                            @for f in &p.faults {
                                div.fault {
                                    p { strong { (line(&f.stage)) } " " span.badge { (tag(&f.fault.kind)) } }
                                    pre { (text(&f.fault.message)) }
                                    @if !f.fault.backtrace.is_empty() {
                                        details { summary { "Guest backtrace" } pre { @for b in &f.fault.backtrace { (text(b)) "\n" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub(crate) fn report(session: &UiSession, r: &ReviewReport, now: i64) -> Markup {
    layout(
        "Report",
        Some(session),
        html! {
            h1 { "What reviewers kept" }
            p.hint { "\"Kept unchanged\": of the items a reviewer decided, the share approved with the proposed value (a rejection keeps nothing)." }
            div.cards {
                div.card #automation {
                    h3 { "Automation" }
                    p.big { (percent(r.automation.rate)) }
                    p { (r.automation.without_review) " of " (r.automation.runs) " decisions applied without a person" }
                }
                div.card #backlog {
                    h3 { "Backlog" }
                    p.big { (r.backlog.open) }
                    p { "open" @if let Some(o) = &r.backlog.oldest { ", the oldest waiting " (age(o, now)) } }
                }
            }
            h2 { "Triage fields kept unchanged" }
            @if r.fields.is_empty() { p.muted { "No verdicts yet." } } @else {
                table.report #fields {
                    thead { tr { th { "Plugin" } th { "Field" } th.num { "Decided" } th.num { "Unchanged" } th.num { "Kept" } } }
                    tbody {
                        @for f in &r.fields {
                            tr { td { code { (line(&f.plugin)) } } td { (line(&f.field)) } td.num { (f.decided) } td.num { (f.unchanged) } td.num { (percent(f.rate)) } }
                        }
                    }
                }
            }
            h2 { "Triage fields unchanged at close (help desk)" }
            @if r.at_close.is_empty() { p.muted { "No ticket closed in a connected help desk yet." } } @else {
                table.report #at-close {
                    thead { tr { th { "Plugin" } th { "Field" } th.num { "Closed" } th.num { "Unchanged" } th.num { "Kept" } } }
                    tbody {
                        @for f in &r.at_close {
                            tr { td { code { (line(&f.plugin)) } } td { (line(&f.field)) } td.num { (f.decided) } td.num { (f.unchanged) } td.num { (percent(f.rate)) } }
                        }
                    }
                }
            }
            h2 { "Replies" }
            (outcomes("replies", &r.replies))
            h2 { "Escalations" }
            (outcomes("escalations", &r.escalations))
        },
    )
}

pub(crate) fn outbox(
    session: &UiSession,
    filter: &OutboxFilter,
    items: &[deskhost_protocol::outbox::OutboxItem],
    counts: &[(String, String, u64)],
) -> Markup {
    use deskhost_protocol::outbox::OutboxState;
    layout(
        "Outbox",
        Some(session),
        html! {
            h1 { "Outbox" }
            p.hint { "What goes back to the help desks: every applied effect and approved reply of a connector's ticket, delivered once each." }
            p.summary #outbox-counts {
                @if counts.is_empty() { "Empty: no connector has anything to deliver." }
                @for (i, (connector, state, n)) in counts.iter().enumerate() {
                    @if i > 0 { " · " }
                    (line(connector)) " " (line(state)) " " strong { (n) }
                }
            }
            form.filters method="get" action="/ui/outbox" {
                label { "State "
                    select name="state" {
                        option value="" { "any" }
                        @for s in ["pending", "sending", "delivered", "skipped", "dead"] {
                            option value=(s) selected[s == filter.state] { (s) }
                        }
                    }
                }
                label { "Connector " input name="connector" value=(filter.connector) size="10"; }
                button type="submit" { "Filter" }
            }
            @if items.is_empty() { p.empty { "No outbox item matches." } } @else {
                table.report #outbox {
                    thead { tr { th { "Item" } th { "Kind" } th { "Ticket" } th { "State" } th.num { "Attempts" } th { "Last error" } th { "Written" } th {} } }
                    tbody {
                        @for i in items {
                            tr {
                                td { code { (line(&i.id)) } }
                                td { (i.payload.kind()) }
                                td { (line(&i.connector)) " #" (line(&i.external_id)) }
                                td { span class=(format!("badge outbox-{}", i.state.as_str())) { (i.state.as_str()) } }
                                td.num { (i.attempts) }
                                td { @if let Some(e) = &i.last_error { (line(e)) } }
                                td title=(i.created_at) { (line(&i.created_at)) }
                                td {
                                    @if matches!(i.state, OutboxState::Dead | OutboxState::Skipped) {
                                        form.inline method="post" action=(format!("/ui/outbox/{}/retry", url_component(&i.id))) {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            button type="submit" { "Retry" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn outcomes(id: &str, list: &[deskhost_protocol::review::Outcomes]) -> Markup {
    html! {
        @if list.is_empty() { p.muted { "No verdicts yet." } } @else {
            table.report #(id) {
                thead { tr { th { "Plugin" } th.num { "Accepted" } th.num { "Edited" } th.num { "Rejected" } } }
                tbody {
                    @for o in list {
                        tr { td { code { (line(&o.plugin)) } } td.num { (o.accepted) } td.num { (o.edited) } td.num { (o.rejected) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_hidden_characters_shown() {
        let page = error(
            None,
            StatusCode::BAD_REQUEST,
            "<script>alert(1)</script>\u{202e}x",
        );
        let s = page.into_string();
        assert!(!s.contains("<script>alert"), "{s}");
        assert!(s.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{s}");
        assert!(s.contains("\\u{202e}"), "{s}");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age("2026-01-01T00:00:00Z", 1_767_225_600 + 59), "59s");
        assert_eq!(age("2026-01-01T00:00:00Z", 1_767_225_600 + 7200), "2h");
        assert_eq!(age("not a time", 0), "not a time");
    }
}
