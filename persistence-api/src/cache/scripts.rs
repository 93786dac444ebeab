//! The cache's Lua scripts: each keeps one chat's two keys consistent in one
//! atomic step on the Redis server. The keys (see `keys` in `mod.rs`): a
//! hash with the range held, `lo` and `hi` (every message from `lo` to
//! `hi`, and `hi` the chat's newest), and a sorted set of the messages
//! scored by number. A range is contiguous by construction: a script that
//! would leave a hole starts the chat over instead.
//!
//! `redis::Script` sends EVALSHA and loads the script on NOSCRIPT (checked in
//! redis-rs 1.8 `script.rs`), so a restarted or flushed Redis needs nothing.

use std::sync::LazyLock;

use redis::Script;

/// What APPEND and FILL end with: keep the newest `keep` messages (the
/// range then starts at `hi - keep + 1`) and renew both keys' expiry.
/// Needs the locals `hi`, `keep` and `ttl`.
const KEEP_NEWEST: &str = r"
local size = redis.call('ZCARD', KEYS[2])
if size > keep then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, size - keep - 1)
  redis.call('HSET', KEYS[1], 'lo', hi - keep + 1)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
";

fn with_keep_newest(head: &str) -> Script {
    Script::new(&format!("{head}{KEEP_NEWEST}"))
}

/// Messages `first..=last` (ARGV 5..) were committed: extend the range when
/// they follow it, ignore a replay, start over after a gap. Then keep the
/// newest `keep` and renew the expiry.
/// ARGV: first, last, keep, ttl_s, members...
pub static APPEND: LazyLock<Script> = LazyLock::new(|| {
    with_keep_newest(
        r"
local first = tonumber(ARGV[1])
local last = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local hi = tonumber(redis.call('HGET', KEYS[1], 'hi'))
if hi and hi >= last then
  return 0
end
if not hi or hi + 1 ~= first then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'lo', first)
end
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[2], first + i - 5, ARGV[i])
end
redis.call('HSET', KEYS[1], 'hi', last)
hi = last
",
    )
});

/// Messages `first..=last` (ARGV 5..) were read from the store, `last` its
/// newest then: extend the range down with them, or hold them when the
/// chat has no range (or one behind them). A newer top stays as it is.
/// ARGV: first, last, keep, ttl_s, members...
pub static FILL: LazyLock<Script> = LazyLock::new(|| {
    with_keep_newest(
        r"
local first = tonumber(ARGV[1])
local last = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local lo = tonumber(redis.call('HGET', KEYS[1], 'lo'))
local hi = tonumber(redis.call('HGET', KEYS[1], 'hi'))
if hi and lo and hi >= last then
  if last + 1 < lo or first >= lo then
    return 0
  end
  for i = 5, #ARGV do
    local number = first + i - 5
    if number < lo then
      redis.call('ZADD', KEYS[2], number, ARGV[i])
    end
  end
  redis.call('HSET', KEYS[1], 'lo', first)
else
  redis.call('DEL', KEYS[2])
  for i = 5, #ARGV do
    redis.call('ZADD', KEYS[2], first + i - 5, ARGV[i])
  end
  redis.call('HSET', KEYS[1], 'lo', first, 'hi', last)
  hi = last
end
",
    )
});

/// The range held, and up to `count` messages scored within [min, max],
/// lowest first, or highest first when `rev` is 1: `{lo, hi, members...}`,
/// or nothing when the chat has no range.
/// ARGV: min, max, count, rev
///
/// Flagged read-only (Redis 7), so it runs on replicas and while writes
/// are paused, as any read may.
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua flags=no-writes
local lo = redis.call('HGET', KEYS[1], 'lo')
local hi = redis.call('HGET', KEYS[1], 'hi')
if not lo or not hi then
  return {}
end
local members
if ARGV[4] == '1' then
  members = redis.call('ZRANGE', KEYS[2], ARGV[2], ARGV[1], 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[3])
else
  members = redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
end
table.insert(members, 1, hi)
table.insert(members, 1, lo)
return members
",
    )
});

/// Hands the lease back if it is still ours. ARGV: owner.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Takes or renews the lease that makes this process the cache's only
/// writer: set when free or already ours. ARGV: owner, ttl_ms.
pub static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
    )
});
