//! The Redis backend, shared by replicas. Every operation is one Lua script, so each is atomic on
//! the server (no client-side read-modify-write) and costs one round trip.
//!
//! Layout, every key under one hash tag `{prefix}` so that a cluster keeps them in one slot (the
//! scripts touch several):
//! - `{p}:ev:<key>`: sorted set of events, score = µs, member = `<units>:<transaction>`;
//! - `{p}:tot:<key>`: hash, member → `<running sum>:<running count>` of the key's events up to
//!   and including it (in the set's order), so a window is read in a few lookups;
//! - `{p}:ver:<key>`: the key's version, bumped with every change of its events (starting from the
//!   server's clock, so a re-created key never repeats a version);
//! - `{p}:rec:<length of transaction>:<transaction>:<key>`: the exactly-once mark;
//! - `{p}:txrec:<length of transaction>:<transaction>`: hash of the transaction's records, key →
//!   event member (what a release takes out);
//! - `{p}:txstatus:<txId>`, `{p}:whev:<event id>`: a transaction's last Fireblocks status applied,
//!   and the webhook deliveries applied;
//! - `{p}:rid:<requestId>`: the identity digest the request id first came with;
//! - `{p}:horizon`: the longest prune horizon any replica asked for;
//! - `{p}:hold:<transaction>`: a hold, `{rev, json}` (compare-and-set on `rev`), and `{p}:holds`
//!   the kept holds by creation time;
//! - `{p}:doc:<kind>:<id>`: a small document, `{rev, json}` (compare-and-set on `rev`; deleted:
//!   `json` empty, kept a day), and `{p}:docs:<kind>` the ids of the kind's documents kept
//!   without expiry (the ones listed; expiring ones — sessions, ceremonies — are only looked up).
//!
//! Events past the horizon are pruned from a key whenever it is written, and a key's structures
//! expire once it has been idle longer than the horizon, so memory stays bounded without a sweeper.
//!
//! Each replica also keeps a copy of small keys ([`Kept`]) that answers reads without a round trip;
//! the versions those reads saw are checked by the commit, as every read's are.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Handle;

use super::{Commit, Committed, OrFail, Record, Seen, StateError, StatusApplied, StatusUpdate, WindowTotal};
use crate::decimal::Amount;

/// Running totals, shared by the scripts that change or read events. Sums are decimal strings:
/// units of 10⁻¹⁸ do not fit Lua's numbers (doubles) exactly.
const TOTALS: &str = r"
local function strip(digits)
  local out = string.gsub(table.concat(digits), '^0+', '')
  if out == '' then return '0' end
  return out
end
local function dadd(a, b)
  local r, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    r[#r + 1], carry, i, j = d % 10, math.floor(d / 10), i - 1, j - 1
  end
  local out = {}
  for k = #r, 1, -1 do out[#out + 1] = r[k] end
  return strip(out)
end
local function dsub(a, b)
  local r, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = a:byte(i) - 48 - borrow - (j > 0 and b:byte(j) - 48 or 0)
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    r[#r + 1], i, j = d, i - 1, j - 1
  end
  if borrow ~= 0 or j > 0 then error('running totals do not add up') end
  local out = {}
  for k = #r, 1, -1 do out[#out + 1] = r[k] end
  return strip(out)
end
local function units_of(member) return string.match(member, '^(%d+):') end
-- A key's version starts from the clock (µs), not from zero: a key that expired, or a Redis that
-- lost its data, never shows again a version a replica's copy holds.
local function bump(version)
  if redis.call('EXISTS', version) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', version, now[1] .. string.format('%06d', tonumber(now[2])))
  end
  redis.call('INCR', version)
end
local function totals(tot, member)
  local s, c = string.match(redis.call('HGET', tot, member) or '0:0', '^(%d+):(%d+)$')
  return s, tonumber(c)
end
-- Events written before the totals existed get theirs, once per key.
local function ensure(events, tot)
  if redis.call('HLEN', tot) == redis.call('ZCARD', events) then return end
  redis.call('DEL', tot)
  local sum, count = '0', 0
  for _, member in ipairs(redis.call('ZRANGE', events, 0, -1)) do
    sum, count = dadd(sum, units_of(member)), count + 1
    redis.call('HSET', tot, member, sum .. ':' .. count)
  end
end
local function shift(events, tot, from, units, sign)
  for _, member in ipairs(redis.call('ZRANGE', events, from, -1)) do
    local s, c = totals(tot, member)
    if sign > 0 then s = dadd(s, units) else s = dsub(s, units) end
    redis.call('HSET', tot, member, s .. ':' .. (c + sign))
  end
end
local function add_event(events, tot, at, member)
  ensure(events, tot)
  redis.call('ZADD', events, at, member)
  local rank = redis.call('ZRANK', events, member)
  local s, c = '0', 0
  if rank > 0 then s, c = totals(tot, redis.call('ZRANGE', events, rank - 1, rank - 1)[1]) end
  redis.call('HSET', tot, member, dadd(s, units_of(member)) .. ':' .. (c + 1))
  shift(events, tot, rank + 1, units_of(member), 1)
end
local function remove_event(events, tot, member)
  ensure(events, tot)
  local rank = redis.call('ZRANK', events, member)
  if not rank then return false end
  redis.call('ZREM', events, member)
  redis.call('HDEL', tot, member)
  shift(events, tot, rank, units_of(member), -1)
  return true
end
local function prune(events, tot, cutoff)
  ensure(events, tot)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', events, '-inf', '(' .. cutoff)) do
    redis.call('HDEL', tot, member)
  end
  redis.call('ZREMRANGEBYSCORE', events, '-inf', '(' .. cutoff)
end
";

/// KEYS: events, version, totals, the excluded transaction's record index; ARGV: `(since`, the
/// key's name, since, how many events a replica keeps. {version, sum, count} of the window without
/// the excluded transaction's event (its first event's running totals, its last's, and that one
/// event), then — when the window holds no more than a replica keeps — its events, member and
/// score each.
const READ: &str = r"
ensure(KEYS[1], KEYS[3])
local version = redis.call('GET', KEYS[2]) or '0'
local first = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, 1)[1]
if not first then return {version, '0', '0'} end
local kept = {}
if redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') <= tonumber(ARGV[4]) then
  kept = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
local fs, fc = totals(KEYS[3], first)
local ls, lc = totals(KEYS[3], last)
local sum, count = dsub(ls, dsub(fs, units_of(first))), lc - fc + 1
local own = redis.call('HGET', KEYS[4], ARGV[2])
if own then
  local at = redis.call('ZSCORE', KEYS[1], own)
  if at and tonumber(at) > tonumber(ARGV[3]) then sum, count = dsub(sum, units_of(own)), count - 1 end
end
local result = {version, sum, tostring(count)}
for _, item in ipairs(kept) do table.insert(result, item) end
return result
";

/// KEYS: horizon, the transaction's record index, then the version key of each read, then (events,
/// version, mark, totals) per record. ARGV: reads count, the versions seen, at µs, horizon µs, marks ttl
/// ms, then (record key, member) per record.
const COMMIT: &str = r"
local reads = tonumber(ARGV[1])
for i = 1, reads do
  if (redis.call('GET', KEYS[2 + i]) or '0') ~= ARGV[1 + i] then return {0} end
end
local at, horizon, marks_ttl = ARGV[reads + 2], tonumber(ARGV[reads + 3]), ARGV[reads + 4]
local known = tonumber(redis.call('GET', KEYS[1]) or '0')
if horizon > known then redis.call('SET', KEYS[1], ARGV[reads + 3]) else horizon = known end
local cutoff = string.format('%d', tonumber(at) - horizon)
local idle_ms = string.format('%d', math.floor(horizon / 1000) + 60000)
local result = {1}
local k, a, n = reads + 3, reads + 5, 1
while k <= #KEYS do
  local events, version, mark, tot = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  if redis.call('SET', mark, at, 'NX', 'PX', marks_ttl) then
    add_event(events, tot, at, ARGV[a + 1])
    bump(version)
    redis.call('HSET', KEYS[2], ARGV[a], ARGV[a + 1])
    redis.call('PEXPIRE', KEYS[2], marks_ttl)
    table.insert(result, n)
  end
  prune(events, tot, cutoff)
  redis.call('PEXPIRE', events, idle_ms)
  redis.call('PEXPIRE', tot, idle_ms)
  redis.call('PEXPIRE', version, idle_ms)
  k, a, n = k + 4, a + 2, n + 1
end
return result
";

/// KEYS: the transaction's record index, then (events, version, mark, totals) per record; ARGV:
/// (record key, member) per record.
const REVERT: &str = r"
for i = 1, (#KEYS - 1) / 4 do
  local events, version, mark, tot = KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i], KEYS[4 * i + 1]
  if redis.call('DEL', mark) == 1 then
    remove_event(events, tot, ARGV[2 * i])
    bump(version)
    redis.call('HDEL', KEYS[1], ARGV[2 * i - 1])
  end
end
return 1
";

/// KEYS: the transaction's record index, its status, its txId binding, then the event id's key
/// (none for a release by hand). ARGV: events prefix, version prefix, the origin binding prefix
/// (never released), release 1/0, keep ms, lastUpdated, the status JSON, totals prefix. A release marks the txId
/// ended. The events and version keys are built here from the prefix: all live under one hash
/// tag, in the same slot.
const APPLY_STATUS: &str = r"
if #KEYS >= 4 then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[5]) then return {'duplicate'} end
  local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '-1')
  if tonumber(ARGV[6]) <= last then return {'stale'} end
  redis.call('HSET', KEYS[2], 'last', ARGV[6], 'json', ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
local result = {'applied'}
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], 'ended', 'PX', ARGV[5])
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local key, member = fields[i], fields[i + 1]
    if string.sub(key, 1, #ARGV[3]) ~= ARGV[3] and remove_event(ARGV[1] .. key, ARGV[8] .. key, member) then
      bump(ARGV[2] .. key)
      table.insert(result, key)
    end
  end
end
return result
";

/// KEYS: the request id's key, then the txId's if any; ARGV: digest, ttl ms. 0 first (the
/// request id), 1 same, 2 the request id came with another identity, 3 the txId did, 4 the
/// transaction ended (its records released). A refused request binds nothing.
const REMEMBER: &str = r"
local first = 1
for i, key in ipairs(KEYS) do
  local known = redis.call('GET', key)
  if known == 'ended' and i == 2 then return 4 end
  if known and known ~= ARGV[1] then return 1 + i end
  if not known and i == 1 then first = 0 end
end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2], 'NX') end
return first
";

/// KEYS: the hold, the index; ARGV: expected revision, JSON, created µs, id, keep ms, cutoff µs.
const PUT_HOLD: &str = r"
local revision = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if revision ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'rev', revision + 1, 'json', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
return 1
";

/// KEYS: the index; ARGV: the hold key prefix. Every kept hold's JSON, oldest first.
const HOLDS: &str = r"
local found = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local json = redis.call('HGET', ARGV[1] .. id, 'json')
  if json then table.insert(found, json) end
end
return found
";

/// KEYS: the document, the kind's index; ARGV: expected revision, JSON ('' deletes), expires ms
/// since the epoch (0: kept), id.
const PUT_DOCUMENT: &str = r"
local revision = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if revision ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'rev', revision + 1, 'json', ARGV[2])
if ARGV[2] == '' then
  redis.call('PEXPIRE', KEYS[1], 86400000)
  redis.call('SREM', KEYS[2], ARGV[4])
  return 1
end
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  redis.call('SREM', KEYS[2], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('SADD', KEYS[2], ARGV[4])
end
return 1
";

/// KEYS: the kind's index; ARGV: the kind's key prefix. Every live document's JSON (the ids of
/// expired ones are dropped from the index on the way).
const DOCUMENTS: &str = r"
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local json = redis.call('HGET', ARGV[1] .. id, 'json')
  if json and json ~= '' then table.insert(found, json) else redis.call('SREM', KEYS[1], id) end
end
return found
";

/// A replica keeps a copy of the keys whose window holds at most this many events.
const KEPT_EVENTS: usize = 64;
/// And of at most this many keys; past it, the copy starts afresh.
const KEPT_KEYS: usize = 1024;

/// The replica's copy of small keys: every event of a key after some instant, as of a version.
/// A `velocity.*` read it can answer costs no round trip, and stays exact: the read's version goes
/// into the commit, which refuses it if any replica changed the key since (a conflict: the copy is
/// dropped and the decision evaluated again from Redis), and a decision that commits nothing has
/// its versions checked before it is answered ([`Shared::unchanged`]). So an approval on a key the
/// replica knows waits for one round trip, its commit, instead of two.
#[derive(Default)]
struct Kept(Mutex<HashMap<String, KeptKey>>);

struct KeptKey {
    version: u64,
    /// Every event after this instant is in `events`.
    since_us: u64,
    /// (µs, units, transaction).
    events: Vec<(u64, u128, String)>,
}

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeptKey>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window after `since_us` without transaction `exclude`'s event, if the copy holds it.
    fn window(&self, key: &str, since_us: u64, exclude: &str) -> Option<WindowTotal> {
        let keys = self.lock();
        let kept = keys.get(key).filter(|k| since_us >= k.since_us)?;
        let mut total = WindowTotal { version: kept.version, copy: true, ..WindowTotal::default() };
        for (_, units, _) in kept.events.iter().filter(|(at, _, tx)| *at > since_us && tx != exclude) {
            total.sum = total.sum.checked_add(Amount::from_units(*units))?;
            total.count += 1;
        }
        Some(total)
    }

    /// Keeps what a read from Redis returned, unless the copy is more recent, or as recent and
    /// reaching as far back (a key read over 1h and 24h keeps the 24h window).
    fn keep(&self, key: &str, kept: KeptKey) {
        let mut keys = self.lock();
        if keys.get(key).is_some_and(|k| {
            (k.version, std::cmp::Reverse(k.since_us)) >= (kept.version, std::cmp::Reverse(kept.since_us))
        }) {
            return;
        }
        if keys.len() >= KEPT_KEYS {
            keys.clear();
        }
        keys.insert(key.to_string(), kept);
    }

    /// A commit validated `version` and added `added` events: the copy follows, if it was at it.
    fn advance(&self, key: &str, version: u64, added: Option<(u64, u128, String)>) {
        let mut keys = self.lock();
        let Some(kept) = keys.get_mut(key).filter(|k| k.version == version) else {
            keys.remove(key);
            return;
        };
        if let Some(event) = added {
            kept.version += 1;
            kept.events.push(event);
        }
        // A key's first write starts its version from the clock, which the copy cannot know.
        if kept.events.len() > KEPT_EVENTS || (version == 0 && kept.version != 0) {
            keys.remove(key);
        }
    }

    fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut kept = self.lock();
        for key in keys {
            kept.remove(key);
        }
    }
}

pub struct Shared {
    /// See [`Kept`].
    kept: Kept,
    connection: ConnectionManager,
    /// The runtime the connection lives on; blocking reads from evaluation threads run on it.
    runtime: Handle,
    prefix: String,
    timeout: Duration,
    read: Script,
    commit: Script,
    revert: Script,
    remember: Script,
    apply_status: Script,
    put_hold: Script,
    holds: Script,
    put_document: Script,
    documents: Script,
}

impl Shared {
    /// Prepares a lazily connecting client: nothing is sent until the first operation.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StateError> {
        let runtime =
            Handle::try_current().map_err(|_| StateError("the Redis backend needs the server's runtime".into()))?;
        let client = redis::Client::open(url).map_err(|e| StateError(format!("state.url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let _enter = runtime.enter();
        let connection = ConnectionManager::new_lazy_with_config(client, config).or_fail()?;
        Ok(Self {
            kept: Kept::default(),
            connection,
            runtime: runtime.clone(),
            prefix: prefix.to_string(),
            timeout,
            read: Script::new(&format!("{TOTALS}{READ}")),
            commit: Script::new(&format!("{TOTALS}{COMMIT}")),
            revert: Script::new(&format!("{TOTALS}{REVERT}")),
            remember: Script::new(REMEMBER),
            apply_status: Script::new(&format!("{TOTALS}{APPLY_STATUS}")),
            put_hold: Script::new(PUT_HOLD),
            holds: Script::new(HOLDS),
            put_document: Script::new(PUT_DOCUMENT),
            documents: Script::new(DOCUMENTS),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{{{}}}:{kind}:{name}", self.prefix)
    }

    /// Runs `script` within the operation budget.
    async fn run<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Result<T, StateError> {
        let mut connection = self.connection.clone();
        let attempts = async {
            match invocation.invoke_async(&mut connection).await {
                // A connection that broke while idle (Redis restarted) is found broken only now:
                // the manager reconnects, and the script runs once more. Every script is safe to
                // run twice: commits and guards are idempotent, hold writes check a revision.
                Err(e) if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() => {
                    tracing::warn!(error = %e, "redis connection lost; reconnecting and trying once more");
                    invocation.invoke_async(&mut connection).await
                }
                result => result,
            }
        };
        self.within_budget(attempts).await
    }

    /// Runs a plain command within the operation budget.
    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, StateError> {
        let mut connection = self.connection.clone();
        self.within_budget(command.query_async(&mut connection)).await
    }

    /// `operation` within the budget, its failure as a [`StateError`].
    async fn within_budget<T>(
        &self,
        operation: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        let result = match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result.map_err(|e| StateError(format!("redis: {e}"))),
            Err(_) => Err(StateError(format!("redis did not answer within {:?}", self.timeout))),
        };
        // A failure may be a restart or a failover that lost writes: the copy starts afresh.
        if result.is_err() {
            self.kept.lock().clear();
        }
        result
    }

    /// A window, from the copy when `copy` allows and it holds the window (see [`Kept`]).
    pub fn window(&self, key: &str, since_us: u64, exclude: &str, copy: bool) -> Result<WindowTotal, StateError> {
        if copy && let Some(total) = self.kept.window(key, since_us, exclude) {
            return Ok(total);
        }
        let mut invocation = self.read.prepare_invoke();
        invocation
            .key(self.key("ev", key))
            .key(self.key("ver", key))
            .key(self.key("tot", key))
            .key(self.index(exclude))
            .arg(format!("({since_us}"))
            .arg(key)
            .arg(since_us)
            .arg(KEPT_EVENTS);
        let answer: Vec<String> = self.runtime.block_on(self.run(invocation))?;
        let number = |text: &str, what: &str| StateError(format!("the {what} of {key:?} is not a number: {text:?}"));
        let [version, sum, count, events @ ..] = answer.as_slice() else {
            return Err(StateError(format!("redis: a short answer to a read of {key:?}")));
        };
        let total = WindowTotal {
            version: version.parse().map_err(|_| number(version, "version"))?,
            sum: Amount::from_units(sum.parse().map_err(|_| number(sum, "sum"))?),
            count: count.parse().map_err(|_| number(count, "count"))?,
            copy: false,
        };
        // An empty window comes without its events: it is kept as empty only when the count says so.
        if total.count == 0 || !events.is_empty() {
            let events: Option<Vec<(u64, u128, String)>> = events
                .chunks(2)
                .map(|pair| {
                    let (units, tx) = pair.first()?.split_once(':')?;
                    Some((pair.get(1)?.parse().ok()?, units.parse().ok()?, tx.to_string()))
                })
                .collect();
            if let Some(events) = events.filter(|e| e.len() <= KEPT_EVENTS) {
                self.kept.keep(key, KeptKey { version: total.version, since_us, events });
            }
        }
        Ok(total)
    }

    pub async fn commit(&self, commit: &Commit, horizon_us: u64, marks_us: u64) -> Result<Committed, StateError> {
        let mut invocation = self.commit.prepare_invoke();
        invocation.key(format!("{{{}}}:horizon", self.prefix)).key(self.index(&commit.id)).arg(commit.reads.len());
        for (key, version) in &commit.reads {
            invocation.key(self.key("ver", key)).arg(version);
        }
        invocation.arg(commit.at_us).arg(horizon_us).arg(marks_us / 1000);
        for record in &commit.records {
            self.record_keys(&mut invocation, &commit.id, record);
        }
        let touched =
            || commit.reads.iter().map(|(k, _)| k.as_str()).chain(commit.records.iter().map(|r| r.key.as_str()));
        let result = match self.run::<Vec<usize>>(invocation).await {
            Ok(result) => result,
            Err(error) => {
                // Whether it was applied is unknown: the copy of these keys cannot be trusted.
                self.kept.forget(touched());
                return Err(error);
            }
        };
        let Some((1, new)) = result.split_first() else {
            self.kept.forget(commit.reads.iter().map(|(k, _)| k.as_str()));
            return Ok(Committed::Conflict);
        };
        let new: Vec<&Record> = new.iter().filter_map(|i| commit.records.get(i.wrapping_sub(1))).collect();
        for (key, version) in &commit.reads {
            let added = new.iter().find(|r| &r.key == key).map(|r| (commit.at_us, r.amount.units(), commit.id.clone()));
            self.kept.advance(key, *version, added);
        }
        // A key recorded without being read moved to a version the copy cannot know.
        self.kept.forget(
            commit.records.iter().map(|r| r.key.as_str()).filter(|k| !commit.reads.iter().any(|(r, _)| r == k)),
        );
        Ok(Committed::Applied { new: new.into_iter().map(|r| r.key.clone()).collect() })
    }

    /// Whether every key read is still at the version seen: one round trip, for a decision that
    /// commits nothing but read the replica's copy. A key that moved is dropped from the copy.
    pub async fn unchanged(&self, reads: &[(String, u64)]) -> Result<bool, StateError> {
        let mut get = redis::cmd("MGET");
        for (key, _) in reads {
            get.arg(self.key("ver", key));
        }
        let versions: Vec<Option<u64>> = self.query(get).await?;
        let moved: Vec<&str> = reads
            .iter()
            .zip(versions)
            .filter(|((_, seen), now)| now.unwrap_or(0) != *seen)
            .map(|((key, _), _)| key.as_str())
            .collect();
        let unchanged = moved.is_empty();
        self.kept.forget(moved);
        Ok(unchanged)
    }

    fn record_keys(&self, invocation: &mut redis::ScriptInvocation<'_>, id: &str, record: &Record) {
        invocation
            .key(self.key("ev", &record.key))
            .key(self.key("ver", &record.key))
            // The id's length keeps `a:b` + `c` apart from `a` + `b:c`.
            .key(self.key("rec", &format!("{}:{id}:{}", id.len(), record.key)))
            .key(self.key("tot", &record.key))
            .arg(&record.key)
            .arg(format!("{}:{id}", record.amount.units()));
    }

    /// The index of transaction `id`'s records (the id's length keeps ids apart, as in marks).
    fn index(&self, id: &str) -> String {
        self.key("txrec", &format!("{}:{id}", id.len()))
    }

    pub async fn apply_status(
        &self,
        update: Option<&StatusUpdate>,
        tx_id: &str,
        release: bool,
        keep_us: u64,
    ) -> Result<StatusApplied, StateError> {
        let mut invocation = self.apply_status.prepare_invoke();
        invocation.key(self.index(tx_id)).key(self.key("txstatus", tx_id)).key(self.key("txid", tx_id));
        if let Some(update) = update {
            invocation.key(self.key("whev", &update.event_id));
        }
        invocation
            .arg(self.key("ev", ""))
            .arg(self.key("ver", ""))
            .arg(crate::origin::JTI_KEY_PREFIX)
            .arg(u8::from(release))
            .arg((keep_us / 1000).max(1))
            .arg(update.map_or(0, |u| u.last_updated_ms))
            .arg(update.map_or("", |u| u.json.as_str()))
            .arg(self.key("tot", ""));
        let result: Vec<String> = self.run(invocation).await?;
        self.kept.forget(result.iter().skip(1).map(String::as_str));
        match result.split_first() {
            Some((outcome, _)) if outcome == "duplicate" => Ok(StatusApplied::Duplicate),
            Some((outcome, _)) if outcome == "stale" => Ok(StatusApplied::Stale),
            Some((_, released)) => Ok(StatusApplied::Applied { released: released.to_vec() }),
            None => Err(StateError("redis: an empty answer to a status update".into())),
        }
    }

    pub async fn revert(&self, id: &str, records: &[&Record]) -> Result<(), StateError> {
        let mut invocation = self.revert.prepare_invoke();
        invocation.key(self.index(id));
        for record in records {
            self.record_keys(&mut invocation, id, record);
        }
        let result = self.run::<i64>(invocation).await.map(drop);
        self.kept.forget(records.iter().map(|r| r.key.as_str()));
        result
    }

    pub async fn remember(
        &self,
        request_id: &str,
        tx_id: Option<&str>,
        digest: [u8; 32],
        ttl: Duration,
    ) -> Result<Seen, StateError> {
        let mut invocation = self.remember.prepare_invoke();
        invocation.key(self.key("rid", request_id));
        if let Some(tx_id) = tx_id {
            invocation.key(self.key("txid", tx_id));
        }
        invocation.arg(crate::keys::hex(&digest)).arg(ttl.as_millis() as u64);
        match self.run::<i64>(invocation).await? {
            0 => Ok(Seen::First),
            1 => Ok(Seen::Same),
            2 => Ok(Seen::Different),
            3 => Ok(Seen::TxIdReused),
            _ => Ok(Seen::TxEnded),
        }
    }

    pub async fn hold(&self, id: &str) -> Result<Option<(u64, String)>, StateError> {
        let mut get = redis::cmd("HMGET");
        get.arg(self.key("hold", id)).arg("rev").arg("json");
        Ok(match self.query::<(Option<u64>, Option<String>)>(get).await? {
            (Some(revision), Some(json)) => Some((revision, json)),
            _ => None,
        })
    }

    pub async fn put_hold(
        &self,
        id: &str,
        revision: u64,
        created_us: u64,
        json: &str,
        keep_us: u64,
    ) -> Result<bool, StateError> {
        let mut invocation = self.put_hold.prepare_invoke();
        invocation
            .key(self.key("hold", id))
            .key(format!("{{{}}}:holds", self.prefix))
            .arg(revision)
            .arg(json)
            .arg(created_us)
            .arg(id)
            .arg(keep_us / 1000)
            .arg(created_us.saturating_sub(keep_us));
        Ok(self.run::<i64>(invocation).await? == 1)
    }

    pub async fn holds(&self) -> Result<Vec<String>, StateError> {
        let mut invocation = self.holds.prepare_invoke();
        invocation.key(format!("{{{}}}:holds", self.prefix)).arg(self.key("hold", ""));
        self.run(invocation).await
    }

    pub async fn document(&self, kind: &str, id: &str) -> Result<(u64, Option<String>), StateError> {
        let mut get = redis::cmd("HMGET");
        get.arg(self.key("doc", &format!("{kind}:{id}"))).arg("rev").arg("json");
        let (revision, json): (Option<u64>, Option<String>) = self.query(get).await?;
        Ok((revision.unwrap_or(0), json.filter(|json| !json.is_empty())))
    }

    pub async fn put_document(
        &self,
        kind: &str,
        id: &str,
        revision: u64,
        expires_us: u64,
        json: &str,
    ) -> Result<bool, StateError> {
        let mut invocation = self.put_document.prepare_invoke();
        invocation
            .key(self.key("doc", &format!("{kind}:{id}")))
            .key(self.key("docs", kind))
            .arg(revision)
            .arg(json)
            .arg(expires_us / 1000)
            .arg(id);
        Ok(self.run::<i64>(invocation).await? == 1)
    }

    pub async fn documents(&self, kind: &str) -> Result<Vec<String>, StateError> {
        let mut invocation = self.documents.prepare_invoke();
        invocation.key(self.key("docs", kind)).arg(self.key("doc", &format!("{kind}:")));
        self.run(invocation).await
    }

    pub async fn probe(&self) -> Result<(), StateError> {
        self.query::<String>(redis::cmd("PING")).await.map(drop)
    }
}
