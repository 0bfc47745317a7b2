//! Reading the change log for subscriptions that must catch up: what a client with a stale `known_version`
//! missed, and the replay of a stream resumed with `resume_after`.
//!
//! Requests are answered in batches by one task: while a read runs, the requests that arrive queue up, and the
//! next round answers all of them with one query per few hundred records. A storm of thousands of
//! subscriptions (a replica restarted, a shift begins) therefore costs a few queries on one connection instead
//! of thousands of queries competing for the pool, and no subscription is refused for want of a connection.

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, oneshot};

use super::hub::ResourceKey;
use crate::{
    domain::change::{Change, ChangeKind, ResourceKind},
    error::{Error, Result},
    store::{
        Store,
        change_log::{LogRange, MAX_CHANGES_PER_READ},
    },
};

/// Requests answered by one round of reads.
const MAX_BATCH: usize = 1_024;
/// Records named in one query of known versions.
const RECORDS_PER_QUERY: usize = 100;
/// Resources named in one replay query (a single request may name more, up to a stream's limit).
const RESOURCES_PER_REPLAY_QUERY: usize = 500;
/// Requests waiting for a round before new ones wait to be queued.
const QUEUE: usize = 4_096;

/// The handle subscriptions use; cheap to clone. The reading task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct CatchUp {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
enum Job {
    Versions(VersionsJob),
    Replay(ReplayJob),
}

#[derive(Debug)]
struct VersionsJob {
    records: Vec<(ResourceKey, i64)>,
    upto: i64,
    reply: oneshot::Sender<Result<Vec<Vec<Change>>>>,
}

#[derive(Debug)]
struct ReplayJob {
    resources: Vec<ResourceKey>,
    range: LogRange,
    reply: oneshot::Sender<Result<Vec<Change>>>,
}

impl CatchUp {
    /// Starts the reading task.
    pub fn spawn(store: Store) -> CatchUp {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(work(store, queue));
        CatchUp { jobs }
    }

    /// For each record, its changes past the version the client has (a deletion whatever its version) up to
    /// log position `upto`, oldest first; the newest [`MAX_CHANGES_PER_READ`] if there are more.
    pub async fn since_versions(
        &self,
        records: Vec<(ResourceKey, i64)>,
        upto: i64,
    ) -> Result<Vec<Vec<Change>>> {
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Versions(VersionsJob {
            records,
            upto,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| gone())?
    }

    /// The changes about `resources` (customers with their requests and activities) within `range`, oldest
    /// first.
    pub async fn replay(
        &self,
        resources: Vec<ResourceKey>,
        range: LogRange,
    ) -> Result<Vec<Change>> {
        if resources.is_empty() || range.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Replay(ReplayJob {
            resources,
            range,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| gone())?
    }

    async fn ask(&self, job: Job) -> Result<()> {
        self.jobs.send(job).await.map_err(|_| gone())
    }
}

fn gone() -> Error {
    Error::Unavailable("the change log reader stopped".to_owned())
}

/// The same error for every request of a failed batch.
fn copy(error: &Error) -> Error {
    match error {
        Error::Unavailable(detail) => Error::Unavailable(detail.clone()),
        other => Error::Internal(other.to_string()),
    }
}

async fn work(store: Store, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut versions = Vec::new();
        let mut replays = Vec::new();
        for job in batch.drain(..) {
            match job {
                // A subscription whose stream closed meanwhile needs no answer.
                Job::Versions(job) if !job.reply.is_closed() => versions.push(job),
                Job::Replay(job) if !job.reply.is_closed() => replays.push(job),
                _ => {}
            }
        }
        if !versions.is_empty() {
            answer_versions(&store, versions).await;
        }
        if !replays.is_empty() {
            answer_replays(&store, replays).await;
        }
    }
}

/// Answers every request with the changes of the records it names: one query per [`RECORDS_PER_QUERY`]
/// distinct records, each from the oldest version any request has.
async fn answer_versions(store: &Store, jobs: Vec<VersionsJob>) {
    let mut oldest: HashMap<&ResourceKey, i64> = HashMap::new();
    let mut upto = 0;
    for job in &jobs {
        upto = upto.max(job.upto);
        for (key, known) in &job.records {
            oldest
                .entry(key)
                .and_modify(|v| *v = (*v).min(*known))
                .or_insert(*known);
        }
    }
    let records: Vec<(ResourceKind, &str, i64)> = oldest
        .iter()
        .map(|(key, known)| (key.kind, key.id.as_str(), *known))
        .collect();
    let mut found: Vec<Change> = Vec::new();
    let mut failed = None;
    for chunk in records.chunks(RECORDS_PER_QUERY) {
        match read_versions(store, chunk, upto).await {
            Ok(changes) => found.extend(changes),
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    if let Some(error) = failed {
        for job in jobs {
            let _ = job.reply.send(Err(copy(&error)));
        }
        return;
    }
    found.sort_by_key(|c| c.seq);
    let mut by_record: HashMap<(ResourceKind, &str), Vec<&Change>> = HashMap::new();
    for change in &found {
        by_record
            .entry((change.resource, change.resource_id.as_str()))
            .or_default()
            .push(change);
    }
    for job in jobs {
        let answer = job
            .records
            .iter()
            .map(|(key, known)| {
                by_record
                    .get(&(key.kind, key.id.as_str()))
                    .into_iter()
                    .flatten()
                    .filter(|c| {
                        c.seq <= job.upto && (c.version > *known || c.kind == ChangeKind::Deleted)
                    })
                    .map(|c| (*c).clone())
                    .collect()
            })
            .collect();
        let _ = job.reply.send(Ok(answer));
    }
}

/// The changes of a few records past their versions. If they have more than one read holds, each record is
/// read alone, newest first, so that no record's changes are crowded out by another's.
async fn read_versions(
    store: &Store,
    records: &[(ResourceKind, &str, i64)],
    upto: i64,
) -> Result<Vec<Change>> {
    let changes = store
        .changes_of_records(records, upto, MAX_CHANGES_PER_READ, false)
        .await?;
    if (changes.len() as u64) < MAX_CHANGES_PER_READ {
        return Ok(changes);
    }
    let mut all = Vec::new();
    for record in records {
        all.extend(
            store
                .changes_of_records(
                    std::slice::from_ref(record),
                    upto,
                    MAX_CHANGES_PER_READ,
                    true,
                )
                .await?,
        );
    }
    Ok(all)
}

/// Answers replays a group at a time: one query for the union of the group's resources over the union of their
/// ranges, shared out; a group whose union holds more than a request may take is read request by request.
async fn answer_replays(store: &Store, jobs: Vec<ReplayJob>) {
    let mut group: Vec<ReplayJob> = Vec::new();
    let mut named = 0;
    for job in jobs {
        if !group.is_empty() && named + job.resources.len() > RESOURCES_PER_REPLAY_QUERY {
            answer_replay_group(store, std::mem::take(&mut group)).await;
            named = 0;
        }
        named += job.resources.len();
        group.push(job);
    }
    if !group.is_empty() {
        answer_replay_group(store, group).await;
    }
}

async fn answer_replay_group(store: &Store, group: Vec<ReplayJob>) {
    let mut union: HashSet<(ResourceKind, String)> = HashSet::new();
    let mut range: Option<LogRange> = None;
    for job in &group {
        union.extend(job.resources.iter().map(|k| (k.kind, k.id.clone())));
        range = Some(range.map_or(job.range, |r| r.union(job.range)));
    }
    let Some(range) = range else {
        return;
    };
    let union: Vec<(ResourceKind, String)> = union.into_iter().collect();
    let shared = match store.changes_about(&union, range).await {
        Ok(changes) if (changes.len() as u64) < range.limit => changes,
        Ok(_) => {
            // Too much for one read: each request reads its own range.
            for job in group {
                let resources: Vec<(ResourceKind, String)> = job
                    .resources
                    .iter()
                    .map(|k| (k.kind, k.id.clone()))
                    .collect();
                let answer = store.changes_about(&resources, job.range).await;
                let _ = job.reply.send(answer);
            }
            return;
        }
        Err(error) => {
            for job in group {
                let _ = job.reply.send(Err(copy(&error)));
            }
            return;
        }
    };
    for job in group {
        let records: HashSet<(ResourceKind, &str)> = job
            .resources
            .iter()
            .map(|k| (k.kind, k.id.as_str()))
            .collect();
        let answer = shared
            .iter()
            .filter(|c| c.seq > job.range.after && c.seq <= job.range.upto)
            .filter(|c| {
                records.contains(&(c.resource, c.resource_id.as_str()))
                    || c.parent_id
                        .as_deref()
                        .is_some_and(|parent| records.contains(&(ResourceKind::Customer, parent)))
            })
            .take(usize::try_from(job.range.limit).unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let _ = job.reply.send(Ok(answer));
    }
}
