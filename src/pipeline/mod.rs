//! Running one task: which sub-calls a service needs, in what order, and the merged result.
//!
//! `kyc_*`: document OCR first (its portrait is the compare reference), then liveness and face
//! compare concurrently. Everything routes through [`SubCallRouter`]; merging is in [`merge`].
//! The result is a typed [`TaskOutcome`]; `api::result` renders it for clients.

pub mod merge;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::images;
use crate::providers::{DocumentFields, Image, IssueCode, PortraitCropper, SubCall, Verdict};
use crate::routing::{Fact, RouteContext, Routed, SubCallRouter};
use crate::tasks::outcome::ResultData;
use crate::tasks::store::{media_key, SharedStore, StoreError, TaskMedia};
use crate::tasks::{ServiceInput, TaskId, TaskInput, TaskOutcome};
use merge::{Issues, Outcome};

/// Why a task could not be run at all (as opposed to a failed check, which is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The selfie left in the store for after document OCR is gone: the task was deleted or
    /// expired while it ran.
    #[error("the task's selfie is no longer stored")]
    SelfieGone,
}

/// A `kyc_*` task's selfie: in hand, or still in the store (read after document OCR, so a
/// running task holds only the images its current step needs).
enum Selfie {
    Ready(Image),
    Stored,
}

/// Runs tasks. Shared by every worker of an instance.
pub struct Pipeline {
    router: Arc<dyn SubCallRouter>,
    store: SharedStore,
    cropper: Option<Arc<dyn PortraitCropper>>,
}

/// An uploaded image with its sniffed type, as providers take it.
fn image(bytes: Bytes) -> Image {
    Image { mime: images::sniff(&bytes).unwrap_or("application/octet-stream"), bytes }
}

/// A portrait or registered face used as a compare reference (JPEG unless it says otherwise).
fn reference(bytes: Bytes) -> Image {
    Image { mime: images::sniff(&bytes).unwrap_or("image/jpeg"), bytes }
}

fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// What document OCR gave: its routed call, the fields read, and a portrait (the provider's,
/// or cropped from the first page).
struct DocumentRead {
    routed: Routed,
    fields: Option<DocumentFields>,
    portrait: Option<Bytes>,
}

/// A portrait kept as media: its relative path (`document.portrait`) and absolute URL.
struct StoredPortrait {
    rel: String,
    url: String,
}

/// What running a claimed task leaves the worker to store, in one step: its outcome and the
/// media its result links to (the document portrait), so a portrait never outlives a result
/// that was not written.
#[derive(Debug)]
pub struct Finished {
    pub outcome: TaskOutcome,
    pub media: Vec<TaskMedia>,
}

impl From<TaskOutcome> for Finished {
    fn from(outcome: TaskOutcome) -> Self {
        Self { outcome, media: Vec::new() }
    }
}

/// What the selfie checks of a `kyc_*` task add to its result.
struct SelfieChecks {
    /// `compare`, `liveness` (booleans) and `details`, in that order.
    sections: Vec<(&'static str, Value)>,
    routed: Vec<Routed>,
    failed: bool,
}

impl Pipeline {
    pub fn new(router: Arc<dyn SubCallRouter>, store: SharedStore, cropper: Option<Arc<dyn PortraitCropper>>) -> Self {
        Self { router, store, cropper }
    }

    /// The portrait cropper in use (the local provider's face detector), if any.
    pub fn cropper(&self) -> Option<Arc<dyn PortraitCropper>> {
        self.cropper.clone()
    }

    /// Runs `input` to its outcome, one-shot (no worker holds the task): the portrait is stored
    /// on its own. It takes the images: each is dropped once the sub-calls that need it are
    /// done (a passport page after document OCR), not when the task ends.
    pub async fn run(&self, id: TaskId, input: TaskInput, today: NaiveDate) -> Result<TaskOutcome, PipelineError> {
        let finished = self.run_claimed(id, input, false, today).await?;
        for m in finished.media {
            self.store.put_media(&m.key, m.bytes).await?;
        }
        Ok(finished.outcome)
    }

    /// Runs a claimed task to what its worker stores with `complete_with`. Its selfie may have
    /// been kept back by the store ([`crate::tasks::store::Claimed::late_selfie`]): it is then
    /// read when the selfie checks start.
    pub async fn run_claimed(
        &self,
        id: TaskId,
        input: TaskInput,
        late_selfie: bool,
        today: NaiveDate,
    ) -> Result<Finished, PipelineError> {
        use tracing::Instrument;
        let span = tracing::info_span!("task", task = %id, service = %input.service());
        // Same trace as the POST that created the task, whichever instance runs it.
        crate::telemetry::propagation::set_parent(&span, input.trace_context.as_deref());
        // What routing policies may know: the task id (sticky splits), service and owner (rules).
        let ctx = RouteContext::new(id.to_string())
            .with(Fact::Service, input.service().as_str())
            .with(Fact::Owner, input.owner.as_str());
        // One routing configuration per task, even when a reload swaps another in meanwhile.
        crate::routing::swap::pinned(async move { self.dispatch(id, input, late_selfie, &ctx, today).await }.instrument(span))
            .await
    }

    async fn dispatch(
        &self,
        id: TaskId,
        mut input: TaskInput,
        late_selfie: bool,
        ctx: &RouteContext,
        today: NaiveDate,
    ) -> Result<Finished, PipelineError> {
        let extend = input.extend_data;
        let upload = input.upload.take_images();
        let input = &input;
        let selfie_of = |bytes: Bytes| if late_selfie { Selfie::Stored } else { Selfie::Ready(image(bytes)) };
        match upload {
            ServiceInput::FaceLiveness { selfie } => Ok(self.face_liveness(image(selfie), ctx, extend).await.into()),
            ServiceInput::RegisterFace { selfie } => {
                self.register_face(image(selfie), &input.owner, ctx, extend).await.map(Finished::from)
            }
            ServiceInput::AuthenticateFace { selfie, face } => {
                self.authenticate_face(image(selfie), face, &input.owner, ctx, extend).await.map(Finished::from)
            }
            ServiceInput::OcrPassport { passport } => self.document(id, input, ctx, vec![image(passport)], None, today).await,
            ServiceInput::OcrCard { front, back } => {
                self.document(id, input, ctx, vec![image(front), image(back)], None, today).await
            }
            ServiceInput::KycPassport { selfie, passport } => {
                self.document(id, input, ctx, vec![image(passport)], Some(selfie_of(selfie)), today).await
            }
            ServiceInput::KycCard { selfie, front, back } => {
                self.document(id, input, ctx, vec![image(front), image(back)], Some(selfie_of(selfie)), today).await
            }
        }
    }

    async fn liveness(&self, img: Image, ctx: &RouteContext) -> Routed {
        self.router.route_with(SubCall::Liveness { image: img }, ctx).await
    }

    async fn face_liveness(&self, selfie: Image, ctx: &RouteContext, extend: bool) -> TaskOutcome {
        let routed = self.liveness(selfie, ctx).await;
        let mut issues = Issues::default();
        let (section, _) = merge::liveness_section(&routed, &mut issues);
        let failed = matches!(merge::liveness_of(&routed), Outcome::Failed(_));
        let mut data = Map::new();
        data.insert("liveness".into(), section);
        finish(data, issues, extend, &[routed], failed)
    }

    async fn register_face(
        &self,
        selfie: Image,
        owner: &str,
        ctx: &RouteContext,
        extend: bool,
    ) -> Result<TaskOutcome, PipelineError> {
        let bytes = selfie.bytes.clone();
        let routed = self.liveness(selfie, ctx).await;
        let mut issues = Issues::default();
        let (section, live) = merge::liveness_section(&routed, &mut issues);
        let failed = matches!(merge::liveness_of(&routed), Outcome::Failed(_));
        let mut data = Map::new();
        // Only a live face is registered: a spoof must not become a reference.
        let uuid = if live {
            let uuid = crate::ids::new_v4().hyphenated().to_string();
            self.store.put_face(owner, &uuid, bytes).await?;
            Some(uuid)
        } else {
            None
        };
        data.insert("uuid".into(), json!(uuid));
        data.insert("liveness".into(), section);
        Ok(finish(data, issues, extend, &[routed], failed))
    }

    async fn authenticate_face(
        &self,
        selfie: Image,
        face: Uuid,
        owner: &str,
        ctx: &RouteContext,
        extend: bool,
    ) -> Result<TaskOutcome, PipelineError> {
        let mut issues = Issues::default();
        let mut data = Map::new();
        let Some(registered) = self.store.get_face(owner, &face.hyphenated().to_string()).await? else {
            issues.add("authentication", IssueCode::FaceNotRegistered.as_str(), IssueCode::FaceNotRegistered.default_message());
            data.insert("authentication".into(), json!({ "result": false }));
            return Ok(finish(data, issues, extend, &[], false));
        };
        let (live, cmp) = tokio::join!(
            self.liveness(selfie.clone(), ctx),
            self.router.route_with(SubCall::FaceCompare { probe: selfie, reference: reference(registered) }, ctx)
        );
        let (lsec, _) = merge::liveness_section(&live, &mut issues);
        let auth = match merge::compare_of(&cmp) {
            Outcome::Answer(c) => merge::authentication_section(c),
            _ => merge::compare_section(&cmp, "authentication", &mut issues).0,
        };
        let failed = matches!(merge::compare_of(&cmp), Outcome::Failed(_))
            || matches!(merge::liveness_of(&live), Outcome::Failed(_));
        data.insert("authentication".into(), auth);
        data.insert("liveness".into(), lsec);
        Ok(finish(data, issues, extend, &[live, cmp], failed))
    }

    /// `ocr_*` (pages only) and `kyc_*` (a selfie too: liveness, and compare against the
    /// document's portrait): read the document, keep its portrait, then check the selfie.
    async fn document(
        &self,
        id: TaskId,
        input: &TaskInput,
        ctx: &RouteContext,
        pages: Vec<Image>,
        selfie: Option<Selfie>,
        today: NaiveDate,
    ) -> Result<Finished, PipelineError> {
        let mut issues = Issues::default();
        let read = self.read_document(pages, ctx, &mut issues).await;
        let (stored, media) = match &read.portrait {
            Some(p) => {
                let (stored, media) = portrait_media(input, p.clone());
                (Some(stored), vec![media])
            }
            None => (None, Vec::new()),
        };
        let mut data = Map::new();
        data.insert("document".into(), document_value(read.fields.as_ref(), stored.as_ref(), today, &mut issues));
        let mut failed = read.routed.answer.is_none();
        let mut routed = vec![read.routed];
        if let Some(selfie) = selfie {
            let selfie = match selfie {
                Selfie::Ready(selfie) => selfie,
                Selfie::Stored => image(self.store.late_image(id, "selfie").await?.ok_or(PipelineError::SelfieGone)?),
            };
            let ctx = with_document_facts(ctx, read.fields.as_ref());
            let checks = self.check_selfie(selfie, read.portrait, &ctx, &mut issues).await;
            failed |= checks.failed;
            data.extend(checks.sections.into_iter().map(|(k, v)| (k.to_string(), v)));
            routed.extend(checks.routed);
        }
        Ok(Finished { outcome: finish(data, issues, input.extend_data, &routed, failed), media })
    }

    /// Document OCR over `pages`; a portrait is cropped from the first page when the provider
    /// returned none. A rejection or no answer is an issue on `document`.
    async fn read_document(&self, pages: Vec<Image>, ctx: &RouteContext, issues: &mut Issues) -> DocumentRead {
        let first_page = pages.first().cloned();
        let routed = self.router.route_with(SubCall::DocumentOcr { pages }, ctx).await;
        let (fields, mut portrait) = match routed.answer.as_ref().map(|a| &a.verdict) {
            Some(Verdict::Ocr(o)) => (Some(o.fields.clone()), o.portrait.clone()),
            Some(Verdict::Rejected(r)) => {
                issues.add_rejection("document", r);
                (None, None)
            }
            _ => {
                issues.add("document", IssueCode::ProviderFailed.as_str(), IssueCode::ProviderFailed.default_message());
                (None, None)
            }
        };
        if portrait.is_none() {
            if let (Some(cropper), Some(page)) = (self.cropper.clone(), first_page) {
                portrait = tokio::task::spawn_blocking(move || cropper.crop(&page)).await.ok().flatten();
            }
        }
        DocumentRead { routed, fields, portrait }
    }

    /// Liveness on the selfie and, when there is a portrait, face compare against it, at once.
    async fn check_selfie(
        &self,
        selfie: Image,
        portrait: Option<Bytes>,
        ctx: &RouteContext,
        issues: &mut Issues,
    ) -> SelfieChecks {
        let compare = async {
            match portrait {
                Some(p) => {
                    let call = SubCall::FaceCompare { probe: selfie.clone(), reference: reference(p) };
                    Some(self.router.route_with(call, ctx).await)
                }
                None => None,
            }
        };
        let (live, cmp) = tokio::join!(self.liveness(selfie.clone(), ctx), compare);
        let (lsec, is_live) = merge::liveness_section(&live, issues);
        let mut failed = matches!(merge::liveness_of(&live), Outcome::Failed(_));
        let mut details = Map::new();
        details.insert("liveness".into(), lsec);
        let is_match = match &cmp {
            Some(c) => {
                let (csec, m) = merge::compare_section(c, "compare", issues);
                failed |= matches!(merge::compare_of(c), Outcome::Failed(_));
                details.insert("compare".into(), csec);
                m
            }
            None => {
                issues.add("compare", IssueCode::PortraitNotFound.as_str(), IssueCode::PortraitNotFound.default_message());
                details.insert("compare".into(), json!({ "result": false, "error_code": IssueCode::PortraitNotFound.as_str() }));
                false
            }
        };
        let sections = vec![("compare", json!(is_match)), ("liveness", json!(is_live)), ("details", Value::Object(details))];
        SelfieChecks { sections, routed: [Some(live), cmp].into_iter().flatten().collect(), failed }
    }
}

/// Rules on nationality / issuing state apply to the selfie checks: the facts the OCR read.
fn with_document_facts(ctx: &RouteContext, fields: Option<&DocumentFields>) -> RouteContext {
    let mut ctx = ctx.clone();
    if let Some(f) = fields {
        for (fact, v) in [(Fact::Nationality, &f.nationality), (Fact::IssuingState, &f.issuing_state)] {
            if let Some(v) = v {
                ctx.set(fact, v.as_str());
            }
        }
    }
    ctx
}

/// The `document` section (null when nothing was read); a failed MRZ checksum and providers
/// that disagree are issues.
fn document_value(
    fields: Option<&DocumentFields>,
    portrait: Option<&StoredPortrait>,
    today: NaiveDate,
    issues: &mut Issues,
) -> Value {
    let Some(f) = fields else { return json!(null) };
    if f.valid == Some(false) {
        issues.add("document", IssueCode::MrzChecksumFailed.as_str(), IssueCode::MrzChecksumFailed.default_message());
    }
    if !f.disagreements.is_empty() {
        let msg = format!("Document providers disagree on: {}", f.disagreements.join(", "));
        issues.add("document", IssueCode::FieldDisagreement.as_str(), &msg);
    }
    merge::document_section(f, portrait.map(|p| (p.rel.as_str(), p.url.as_str())), today)
}

/// The portrait as the owner's media, under an unguessable name: what the result says of it,
/// and what the worker stores with the result (it lives as long as the task).
fn portrait_media(input: &TaskInput, portrait: Bytes) -> (StoredPortrait, TaskMedia) {
    let rel = format!("images/services/{}/{}.jpg", input.service(), random_token());
    let key = media_key(&input.owner, &rel);
    let base = input.base_url.clone().unwrap_or_default();
    let url = format!("{}/media/{}", base.trim_end_matches('/'), rel);
    (StoredPortrait { rel, url }, TaskMedia { key, bytes: portrait })
}

/// The outcome: unanswered when a check got no answer, flagged when one raised an issue;
/// per-provider attempts under `providers`, raw vendor payloads under `extended` when asked.
fn finish(mut data: ResultData, issues: Issues, extend: bool, routed: &[Routed], failed: bool) -> TaskOutcome {
    let flagged = !issues.is_empty();
    if flagged {
        data.insert("issues".into(), issues.into_value());
    }
    let mut providers = BTreeMap::<&str, Vec<Value>>::new();
    let mut extended = BTreeMap::<&str, Map<String, Value>>::new();
    for r in routed {
        let list = providers.entry(r.kind.as_str()).or_default();
        list.extend(r.attempts.iter().map(|a| json!(a)));
        if extend {
            if let Some(a) = &r.answer {
                extended
                    .entry(r.kind.as_str())
                    .or_default()
                    .insert(a.provider.clone(), a.raw.clone().unwrap_or(Value::Null));
            }
        }
    }
    data.insert("providers".into(), json!(providers));
    if extend {
        data.insert("extended".into(), json!(extended));
    }
    match (failed, flagged) {
        (true, _) => TaskOutcome::Unanswered { data },
        (false, true) => TaskOutcome::Flagged { data },
        (false, false) => TaskOutcome::Passed { data },
    }
}
