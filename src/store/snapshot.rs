//! The in-process snapshot of hot reads: who a caller is (by email), what a
//! user holds in an organization (by slug), and an organization's details.
//!
//! Correctness rests on three rules:
//! - **Tags.** Every entry belongs to an organization or a user. A change
//!   names what it touched ([`Tag`]); after it commits, entries of those tags
//!   are dropped on this instance at once, before the call answers, and the
//!   same tags reach every other instance through the database (PostgreSQL
//!   `NOTIFY` inside the change's transaction, SQLite a `cache_changes` row).
//! - **No stale insert.** A reader takes a [`Ticket`] before it reads the
//!   database and may store what it read only if nothing was invalidated
//!   since: a read that raced a change never lands after the change's
//!   invalidation.
//! - **Bounded staleness.** The snapshot answers only while its feed is
//!   known to be caught up: the sync task records, after each round, the
//!   instant before which every change committed elsewhere has been applied.
//!   When that instant is older than [`STALENESS_BOUND`] (the database is
//!   unreachable, the listener lost its connection, the process is starved),
//!   every lookup goes to the database. So an entry is never served more
//!   than the bound after the change that invalidated it committed, on any
//!   instance: a revoked member loses access within it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use uuid::Uuid;

use crate::domain::model::{OrgAccess, OrganizationDetails, User};

/// How stale the snapshot may be before it stops answering.
pub const STALENESS_BOUND: Duration = Duration::from_millis(100);
/// How often the sync task confirms it is caught up.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// Generations are kept per stripe of tags rather than per tag, so their
/// number stays fixed; a change drops the entries of the other tags of its
/// stripe too (a miss, never a stale answer).
const STRIPES: usize = 4096;
/// At most this many tags go into one feed message; more become "all".
const MAX_TAGS: usize = 64;

/// What a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// An organization: its row, its members, its spaces.
    Org(Uuid),
    /// A user: their superadmin flag or display name.
    User(Uuid),
    /// Everything (a user's display name shows in every organization).
    All,
}

impl Tag {
    fn stripe(&self) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        (hasher.finish() % STRIPES as u64) as usize
    }
}

/// Tags as they travel between instances: `o:<uuid>`, `u:<uuid>` and `*`,
/// comma-separated.
pub fn encode_tags(tags: &[Tag]) -> String {
    if tags.len() > MAX_TAGS || tags.contains(&Tag::All) {
        return "*".to_owned();
    }
    tags.iter()
        .map(|t| match t {
            Tag::Org(id) => format!("o:{id}"),
            Tag::User(id) => format!("u:{id}"),
            Tag::All => "*".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The tags of a feed message; anything unreadable means "all" (a wider
/// invalidation is always safe).
pub fn decode_tags(raw: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    for part in raw.split(',') {
        let tag = match part.split_once(':') {
            Some(("o", id)) => Uuid::parse_str(id).ok().map(Tag::Org),
            Some(("u", id)) => Uuid::parse_str(id).ok().map(Tag::User),
            _ => None,
        };
        match tag {
            Some(tag) => tags.push(tag),
            None => return vec![Tag::All],
        }
    }
    tags
}

/// Lookups by cache and outcome, and invalidations by source.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    pub lookups: Family<CacheLabels, Counter>,
    pub invalidations: Family<InvalidationLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CacheLabels {
    /// `caller`, `access` or `organization`.
    pub cache: &'static str,
    /// `hit`, `miss`, or `bypass` (the snapshot was not known to be fresh).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct InvalidationLabels {
    /// `local` (a change of this instance) or `remote` (the feed).
    pub source: &'static str,
}

/// Proof that nothing was invalidated between taking it and storing a read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
}

struct Entry<V> {
    value: V,
    stripe: usize,
    generation: u64,
}

struct State {
    /// Bumped by every invalidation.
    epoch: u64,
    /// Bumped when everything goes.
    global: u64,
    stripes: Vec<u64>,
    users: HashMap<String, Entry<User>>,
    access: HashMap<(String, Uuid), Entry<OrgAccess>>,
    details: HashMap<Uuid, Entry<Arc<OrganizationDetails>>>,
}

impl State {
    fn generation(&self, stripe: usize) -> u64 {
        self.stripes[stripe].wrapping_add(self.global << 32)
    }

    fn valid<V>(&self, entry: &Entry<V>) -> bool {
        entry.generation == self.generation(entry.stripe)
    }
}

/// The snapshot itself; see the module's documentation.
pub struct Snapshot {
    /// Entries per map (the details map holds a tenth); 0 turns it off.
    capacity: usize,
    base: Instant,
    /// Microseconds after `base` up to which every change committed
    /// anywhere has been applied; 0 until the first sync round.
    synced: AtomicU64,
    state: Mutex<State>,
    /// Handles into the metric families, made once (none when off): the
    /// lookups by `CACHES` x `RESULTS`, the invalidations by `SOURCES`.
    lookups: Vec<Counter>,
    invalidations: Vec<Counter>,
}

const CACHES: [&str; 3] = ["caller", "access", "organization"];
const RESULTS: [&str; 3] = ["hit", "miss", "bypass"];
const SOURCES: [&str; 2] = ["local", "remote"];
const CALLER: usize = 0;
const ACCESS: usize = 1;
const ORGANIZATION: usize = 2;
const HIT: usize = 0;
const MISS: usize = 1;
const BYPASS: usize = 2;

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Snapshot {
    pub fn new(capacity: usize, metrics: CacheMetrics) -> Self {
        Self {
            capacity,
            base: Instant::now(),
            synced: AtomicU64::new(0),
            state: Mutex::new(State {
                epoch: 0,
                global: 0,
                stripes: vec![0; STRIPES],
                users: HashMap::new(),
                access: HashMap::new(),
                details: HashMap::new(),
            }),
            lookups: if capacity == 0 {
                Vec::new()
            } else {
                CACHES
                    .iter()
                    .flat_map(|cache| RESULTS.iter().map(move |result| (*cache, *result)))
                    .map(|(cache, result)| {
                        metrics
                            .lookups
                            .get_or_create(&CacheLabels { cache, result })
                            .clone()
                    })
                    .collect()
            },
            invalidations: if capacity == 0 {
                Vec::new()
            } else {
                SOURCES
                    .iter()
                    .map(|source| {
                        metrics
                            .invalidations
                            .get_or_create(&InvalidationLabels { source })
                            .clone()
                    })
                    .collect()
            },
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The sync task's clock: microseconds since the snapshot was made.
    pub fn clock(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Every change committed before `at` (a reading of [`Self::clock`]
    /// taken before the round that applied them) has been applied.
    pub fn synced(&self, at: u64) {
        self.synced.fetch_max(at.max(1), Ordering::AcqRel);
    }

    /// Whether the feed is known to be caught up within the bound.
    pub fn fresh(&self) -> bool {
        let synced = self.synced.load(Ordering::Acquire);
        synced != 0 && self.clock().saturating_sub(synced) <= STALENESS_BOUND.as_micros() as u64
    }

    fn count(&self, cache: usize, result: usize) {
        if let Some(counter) = self.lookups.get(cache * RESULTS.len() + result) {
            counter.inc();
        }
    }

    /// A ticket for a read about to go to the database, or `None` when what
    /// it reads must not be stored (off, or not fresh).
    pub fn ticket(&self) -> Option<Ticket> {
        if !self.enabled() || !self.fresh() {
            return None;
        }
        let state = self.state.lock().ok()?;
        Some(Ticket { epoch: state.epoch })
    }

    fn lookup<K, V, Q>(
        &self,
        cache: usize,
        map: impl Fn(&State) -> &HashMap<K, Entry<V>>,
        key: &Q,
    ) -> Option<V>
    where
        K: std::borrow::Borrow<Q> + Eq + Hash,
        Q: Eq + Hash + ?Sized,
        V: Clone,
    {
        if !self.enabled() {
            return None;
        }
        if !self.fresh() {
            self.count(cache, BYPASS);
            return None;
        }
        let found = self.state.lock().ok().and_then(|state| {
            map(&state)
                .get(key)
                .filter(|entry| state.valid(entry))
                .map(|entry| entry.value.clone())
        });
        self.count(cache, if found.is_some() { HIT } else { MISS });
        found
    }

    fn store<K: Eq + Hash, V>(
        &self,
        ticket: Option<Ticket>,
        tag: Tag,
        map: impl Fn(&mut State) -> &mut HashMap<K, Entry<V>>,
        capacity: usize,
        key: K,
        value: V,
    ) {
        let Some(ticket) = ticket else { return };
        let Ok(mut state) = self.state.lock() else { return };
        if state.epoch != ticket.epoch {
            return;
        }
        let stripe = tag.stripe();
        let generation = state.generation(stripe);
        if map(&mut state).len() >= capacity.max(1) {
            // Drop what is no longer valid; if that is not enough, start
            // over (a burst of misses, bounded memory).
            let global = state.global;
            let stripes = state.stripes.clone();
            let entries = map(&mut state);
            entries.retain(|_, e| e.generation == stripes[e.stripe].wrapping_add(global << 32));
            if entries.len() >= capacity.max(1) {
                entries.clear();
            }
        }
        map(&mut state).insert(
            key,
            Entry {
                value,
                stripe,
                generation,
            },
        );
    }

    /// The user behind an email.
    pub fn user(&self, email: &str) -> Option<User> {
        self.lookup(CALLER, |s| &s.users, email)
    }

    pub fn put_user(&self, ticket: Option<Ticket>, user: &User) {
        self.store(
            ticket,
            Tag::User(user.id),
            |s| &mut s.users,
            self.capacity,
            user.email.clone(),
            user.clone(),
        );
    }

    /// What `user` holds in the organization named `slug`.
    pub fn access(&self, slug: &str, user: Uuid) -> Option<OrgAccess> {
        if !self.enabled() {
            return None;
        }
        // The key is owned; build it once per lookup.
        let key = (slug.to_owned(), user);
        self.lookup(ACCESS, |s| &s.access, &key)
    }

    pub fn put_access(&self, ticket: Option<Ticket>, slug: &str, user: Uuid, access: &OrgAccess) {
        self.store(
            ticket,
            Tag::Org(access.org.id),
            |s| &mut s.access,
            self.capacity,
            (slug.to_owned(), user),
            access.clone(),
        );
    }

    /// An organization's details (spaces, first members, member count).
    pub fn details(&self, org: Uuid) -> Option<Arc<OrganizationDetails>> {
        self.lookup(ORGANIZATION, |s| &s.details, &org)
    }

    pub fn put_details(&self, ticket: Option<Ticket>, details: Arc<OrganizationDetails>) {
        self.store(
            ticket,
            Tag::Org(details.org.id),
            |s| &mut s.details,
            (self.capacity / 10).max(1),
            details.org.id,
            details,
        );
    }

    /// Drops the entries of `tags` (and refuses reads begun before).
    pub fn invalidate(&self, tags: &[Tag], source: &'static str) {
        if tags.is_empty() || !self.enabled() {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            state.epoch = state.epoch.wrapping_add(1);
            for tag in tags {
                match tag {
                    Tag::All => {
                        state.global = state.global.wrapping_add(1);
                        state.users.clear();
                        state.access.clear();
                        state.details.clear();
                    }
                    tag => {
                        let stripe = tag.stripe();
                        state.stripes[stripe] = state.stripes[stripe].wrapping_add(1);
                    }
                }
            }
        }
        let index = usize::from(source != SOURCES[0]);
        if let Some(counter) = self.invalidations.get(index) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Organization;

    fn user(email: &str) -> User {
        User {
            id: Uuid::now_v7(),
            email: email.to_owned(),
            display_name: String::new(),
            is_superadmin: false,
            created_at: 0,
        }
    }

    fn access(org: Uuid, slug: &str) -> OrgAccess {
        OrgAccess {
            org: Organization {
                id: org,
                name: "N".into(),
                slug: slug.into(),
                description: String::new(),
                created_at: 0,
                updated_at: 0,
                etag: String::new(),
                labels: Default::default(),
                deleted_at: None,
                purge_at: None,
            },
            role: None,
        }
    }

    fn fresh_snapshot(capacity: usize) -> Snapshot {
        let snapshot = Snapshot::new(capacity, CacheMetrics::default());
        snapshot.synced(snapshot.clock());
        snapshot
    }

    #[test]
    fn tags_travel_and_anything_unreadable_means_everything() {
        let (o, u) = (Uuid::now_v7(), Uuid::now_v7());
        let tags = vec![Tag::Org(o), Tag::User(u)];
        assert_eq!(decode_tags(&encode_tags(&tags)), tags);
        assert_eq!(decode_tags("*"), vec![Tag::All]);
        assert_eq!(decode_tags("o:not-a-uuid"), vec![Tag::All]);
        assert_eq!(decode_tags(""), vec![Tag::All]);
        let many: Vec<Tag> = (0..=MAX_TAGS).map(|_| Tag::Org(Uuid::now_v7())).collect();
        assert_eq!(encode_tags(&many), "*");
    }

    #[test]
    fn an_invalidated_entry_is_not_served_and_others_stay() {
        let snapshot = fresh_snapshot(100);
        let (a, b) = (user("a@x.test"), user("b@x.test"));
        snapshot.put_user(snapshot.ticket(), &a);
        snapshot.put_user(snapshot.ticket(), &b);
        assert_eq!(snapshot.user("a@x.test"), Some(a.clone()));
        snapshot.invalidate(&[Tag::User(a.id)], "local");
        assert_eq!(snapshot.user("a@x.test"), None);
        // b is in another stripe unless the hash collides; it is then a
        // miss, never stale.
        if Tag::User(a.id).stripe() != Tag::User(b.id).stripe() {
            assert_eq!(snapshot.user("b@x.test"), Some(b));
        }
        let org = Uuid::now_v7();
        snapshot.put_access(snapshot.ticket(), "acme", a.id, &access(org, "acme"));
        assert!(snapshot.access("acme", a.id).is_some());
        snapshot.invalidate(&[Tag::All], "remote");
        assert!(snapshot.access("acme", a.id).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let snapshot = fresh_snapshot(100);
        let a = user("a@x.test");
        // The read began before the change's invalidation...
        let ticket = snapshot.ticket();
        snapshot.invalidate(&[Tag::User(a.id)], "local");
        // ...so what it read (possibly the old row) is not kept.
        snapshot.put_user(ticket, &a);
        assert_eq!(snapshot.user("a@x.test"), None);
        // Even when the invalidation was about something else: the
        // snapshot cannot tell what the read saw.
        let ticket = snapshot.ticket();
        snapshot.invalidate(&[Tag::Org(Uuid::now_v7())], "remote");
        snapshot.put_user(ticket, &a);
        assert_eq!(snapshot.user("a@x.test"), None);
        snapshot.put_user(snapshot.ticket(), &a);
        assert_eq!(snapshot.user("a@x.test"), Some(a));
    }

    #[test]
    fn nothing_is_served_or_stored_unless_the_feed_is_fresh() {
        let snapshot = Snapshot::new(100, CacheMetrics::default());
        assert!(snapshot.ticket().is_none(), "never synced");
        let a = user("a@x.test");
        snapshot.put_user(snapshot.ticket(), &a);
        snapshot.synced(snapshot.clock());
        assert_eq!(snapshot.user("a@x.test"), None);
        snapshot.put_user(snapshot.ticket(), &a);
        assert!(snapshot.user("a@x.test").is_some());
        // The feed stops confirming: after the bound, no answers.
        std::thread::sleep(STALENESS_BOUND + Duration::from_millis(20));
        assert!(!snapshot.fresh());
        assert_eq!(snapshot.user("a@x.test"), None);
        assert!(snapshot.ticket().is_none());
        // Caught up again: the entry (still valid) is served.
        snapshot.synced(snapshot.clock());
        assert!(snapshot.user("a@x.test").is_some());
    }

    #[test]
    fn memory_stays_within_the_capacity() {
        let snapshot = fresh_snapshot(10);
        for i in 0..100 {
            snapshot.put_user(snapshot.ticket(), &user(&format!("u{i}@x.test")));
        }
        let len = snapshot.state.lock().map(|s| s.users.len()).unwrap_or(usize::MAX);
        assert!(len <= 10, "{len} entries for a capacity of 10");
        let off = Snapshot::new(0, CacheMetrics::default());
        off.synced(off.clock());
        off.put_user(off.ticket(), &user("a@x.test"));
        assert_eq!(off.user("a@x.test"), None);
    }
}
