"""Lead state in Redis: one Lua script applies score updates atomically.

Each lead has three keys sharing the hash tag ``{lead_id}``, so they live in
one Redis Cluster slot and one script may touch them together:
- ``<prefix>:{<lead>}:s``, a hash: the state described in `scorer.lead`;
- ``<prefix>:{<lead>}:seen``, a sorted set: recent update ids, each scored
  by the lead's newest event time right after it was applied;
- ``<prefix>:{<lead>}:out``, a hash: the outcome of each remembered update, so
  a redelivered event re-publishes exactly what the first delivery did.

A script call carries up to `ops_per_call` updates and applies them one after
another; a lead's updates of a batch always share one call (more than
`ops_per_call` if it has more), and on a cluster the updates of one call are
those of one slot. The calls of a batch go out in one pipeline: one round
trip per batch.
"""

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from scorer.cluster import ClusterCalls
from scorer.errors import StateStoreError
from scorer.events import Forget
from scorer.lead import (
    STAY_ENGAGEMENT_SHARE,
    ActivityUpdate,
    FitUpdate,
    LeadState,
    Outcome,
    Params,
    Snapshot,
    Update,
    Window,
    evaluate,
)
from scorer.rules import ScoringRule

log = logging.getLogger(__name__)

Client = redis.Redis | redis.RedisCluster

# Marks a hash tag that is not the lead id itself (see `hash_tag`).
ESCAPE = "~"
# `RedisStore.lead_ids` checks this many keys per pipeline.
LEAD_IDS_PER_ROUND_TRIP = 1000

# APPLY_UPDATES: the twin of scorer.lead.apply_activity / apply_fit. Keep the
# arithmetic in the same order as the Python so both give identical doubles.
# KEYS, three per update i: [3i-2] state hash, [3i-1] seen-ids sorted set,
#   [3i] outcomes hash.
# ARGV[1..7]: fit_weight, engagement_weight, threshold, hysteresis,
#   allowed_lateness_ms, dedupe_horizon_ms, min_engagement ('' for none).
# ARGV[8]: the number R of rules the call's activity updates use; then five
#   per rule: name, points, half_life_ms, cap, window_ms (cap and window are
#   '' for an uncapped rule).
# ARGV from 9 + 5R, one per update: 'a <at_ms> <rule number> <op_id>' for an
#   activity, 'f <at_ms> <fit> <digest>' for a fit change (the digest of the
#   firmographic record), 'x <at_ms> 0 <op_id>' for a tombstone. The op id
#   is last, so it may hold spaces.
# ARGV last: '<expire_ms> <now_ms>', how long a lead's keys live after an
#   update changed it and the wall-clock time, or '' to keep leads for ever.
#   Last, so that older versions of the script (bench/state.py --against)
#   read the rest as before.
# Returns one encoded Outcome per update; '' for a stale fit or a tombstone
#   of a lead the store does not hold.
#
# Speed (bench/state.py; bench/pipeline.py for the whole loop): most of an
# update's cost is Lua's own work (tonumber's strtod, string.format, tables,
# the VM), not the Redis commands. So numbers are formatted only when they
# change and parsed only when needed, once per call for texts that recur
# across leads; a state hash field is written only when its text changed;
# the accumulator names are sorted once per update; and old update ids are
# pruned only when the lead's newest time moved.
APPLY_UPDATES = r"""
local STAY_ENGAGEMENT_SHARE = @STAY_ENGAGEMENT_SHARE@
local FW, EW = tonumber(ARGV[1]), tonumber(ARGV[2])
local T, H = tonumber(ARGV[3]), tonumber(ARGV[4])
local LATENESS, HORIZON = tonumber(ARGV[5]), tonumber(ARGV[6])
local MIN_ENGAGEMENT = tonumber(ARGV[7])
-- A share of a positive one keeps an MQL one (Params.stays); 0 asks nothing.
local STAY_ENGAGEMENT = nil
if MIN_ENGAGEMENT and MIN_ENGAGEMENT > 0 then
  STAY_ENGAGEMENT = MIN_ENGAGEMENT * STAY_ENGAGEMENT_SHARE
end
local RULE_COUNT = tonumber(ARGV[8])
local EXPIRE_MS, NOW_TEXT = string.match(ARGV[#ARGV], '^(%d+) (%d+)$')
EXPIRE_MS = tonumber(EXPIRE_MS)
local NOW_MS = tonumber(NOW_TEXT)

local call = redis.call
local format, find, sub, byte = string.format, string.find, string.sub, string.byte
local insert = table.insert

-- %.17g runs printf's exact decimal conversion; a whole number below 1e15
-- (a time, a cap, raw points) prints the same digits with %d for half the
-- cost. Zero keeps %.17g, which tells -0 from 0.
local function num(x)
  if x % 1 == 0 and x ~= 0 and x < 1e15 and x > -1e15 then
    return format('%d', x)
  end
  return format('%.17g', x)
end

-- Per rule, the texts its accumulators' names and tails start with.
local rules = {}
for r = 1, RULE_COUNT do
  local base = 3 + 5 * r
  local name, hl = ARGV[base + 1], tonumber(ARGV[base + 3])
  local cap = tonumber(ARGV[base + 4])
  rules[r] = {name = name, points = tonumber(ARGV[base + 2]), hl = hl, cap = cap,
              window = tonumber(ARGV[base + 5]), folded_name = 'b:' .. name,
              folded_tail = ' ' .. num(hl), window_name = 'w:' .. name .. ':',
              window_tail = cap and ' ' .. num(hl) .. ' ' .. num(cap) .. ' '}
end

-- Texts that recur across the leads of a call (raw window points, and the
-- tail after an accumulator's value: half-life, cap, window end) are parsed
-- once per call: tonumber runs strtod, which costs more than the lookup.
local numbers, window_tails = {}, {}

local function number(text)
  local n = numbers[text]
  if n == nil then
    n = tonumber(text)
    numbers[text] = n
  end
  return n
end

local function window_tail(tail)
  local parsed = window_tails[tail]
  if parsed == nil then
    local hl, cap, ends = string.match(tail, '^ (%S+) (%S+) (%S+)$')
    parsed = {tonumber(hl), tonumber(cap), tonumber(ends)}
    window_tails[tail] = parsed
  end
  return parsed
end

-- min(1, cap / |raw|), exactly as math.min and math.abs give it.
local function share(cap, raw)
  if raw == 0 then return 1 end
  if raw < 0 then raw = -raw end
  local part = cap / raw
  if part < 1 then return part end
  return 1
end

-- An accumulator is an array of numbers (b: value, half-life; w: raw,
-- decayed, half-life, cap, end) with `tail`, the text of the numbers no
-- update changes, and `text`, its saved text while its values are unchanged.
-- A window also keeps `share`, its capped share at its current raw points.
-- Fields are split with plain finds: a Lua pattern costs several times more.
local function folded_acc(text)
  local gap = find(text, ' ', 1, true)
  local tail = sub(text, gap)
  return {tonumber(sub(text, 1, gap - 1)), number(tail), folded = true,
          tail = tail, text = text}
end

local function window_acc(text)
  local gap = find(text, ' ', 1, true)
  local gap2 = find(text, ' ', gap + 1, true)
  local raw_text, tail = sub(text, 1, gap - 1), sub(text, gap2)
  local raw, t = number(raw_text), window_tail(tail)
  return {raw, tonumber(sub(text, gap + 1, gap2 - 1)), t[1], t[2], t[3],
          share = share(t[2], raw), tail = tail, text = text, raw_text = raw_text}
end

-- a < b comparing bytes, as Python compares ASCII text. Lua's own < on
-- strings calls strcoll, and redis-server sets LC_COLLATE from its locale.
local function bytes_less(a, b)
  local n = #a
  if #b < n then n = #b end
  for i = 1, n do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Python sums the accumulators in the byte order of their names, but Lua's
-- < on strings and table.sort call strcoll, and redis-server takes
-- LC_COLLATE from its environment: a language's collation may skip '_' and
-- ':', sort them before digits, or read 'ch' as one letter. So names shaped
-- like ours, in byte order, are compared once per call; if each pair keeps
-- its order (as in the C, POSIX and C.UTF-8 collations), Lua's own < sorts
-- the names, else the slower `bytes_less` does. Known limitation: a
-- collation that departs from byte order only on pairs the probe lacks goes
-- unnoticed; a redis-server run with LC_COLLATE=C needs no probe at all.
local function collation_is_bytewise()
  local probe = {'b:0', 'b:9', 'b:Z', 'b:_', 'b:a', 'b:a_', 'b:a_c', 'b:aa',
                 'b:ab', 'b:ch', 'b:ci', 'b:z', 'w:a0:z', 'w:a:0', 'w:a:z',
                 'w:a_a', 'w:z'}
  for i = 2, #probe do
    if not (probe[i - 1] < probe[i]) then return false end
  end
  return true
end

-- nil gives table.sort its own <, the fast way.
local name_less = nil
if not collation_is_bytewise() then name_less = bytes_less end

local B, W, COLON = byte('b'), byte('w'), byte(':')

local function load(key)
  local flat = call('HGETALL', key)
  local st = {acc = {}, deleted = {}, saved = {}}
  local acc, saved = st.acc, st.saved
  for i = 1, #flat, 2 do
    local name, text = flat[i], flat[i + 1]
    local first, second = byte(name, 1, 2)
    if second == COLON and first == B then
      acc[name] = folded_acc(text)
    elseif second == COLON and first == W then
      acc[name] = window_acc(text)
    else
      saved[name] = text
    end
  end
  -- Only the numbers every update needs are parsed here: the score is
  -- only passed on as text, the fit time only read by a fit update.
  st.ref, st.ref_text = tonumber(saved.r), saved.r
  st.fit = tonumber(saved.fit) or 0
  st.fit_text = saved.fit or '0'
  st.fa_text = saved.fa
  st.fd = saved.fd
  st.fo = saved.fo
  st.mql = saved.m == '1'
  st.score_text = saved.s or '0'
  return st
end

local function acc_text(a)
  if a.text then return a.text end
  if a.folded then return num(a[1]) .. a.tail end
  return (a.raw_text or num(a[1])) .. ' ' .. num(a[2]) .. a.tail
end

local function put(args, saved, name, text)
  if text ~= nil and text ~= saved[name] then
    args[#args + 1] = name
    args[#args + 1] = text
  end
end

-- Lua's unpack puts every item on its C stack, which holds about 8,000: a
-- lead with thousands of open windows once failed every call it was in.
local PART = 500

local function call_in_parts(command, key, items)
  for i = 1, #items, PART do
    call(command, key, unpack(items, i, math.min(i + PART - 1, #items)))
  end
end

local function save(key, st)
  local args, saved = {}, st.saved
  put(args, saved, 'fit', st.fit_text)
  put(args, saved, 'm', st.mql and '1' or '0')
  put(args, saved, 's', st.score_text)
  put(args, saved, 'r', st.ref_text)
  put(args, saved, 'fa', st.fa_text)
  put(args, saved, 'fd', st.fd)
  put(args, saved, 'fo', st.fo)
  for name, a in pairs(st.acc) do
    if not a.text then
      args[#args + 1] = name
      args[#args + 1] = acc_text(a)
    end
  end
  call_in_parts('HSET', key, args)
  call_in_parts('HDEL', key, st.deleted)
  -- The lead is back after an erasure: its state must not expire with the
  -- erasure's memory.
  if saved.x then
    call('HDEL', key, 'x')
    call('PERSIST', key)
  end
end

-- A lead's keys live on for EXPIRE_MS after each update that changed it; a
-- repeat or a stale record changes nothing, so it keeps nothing alive. The
-- expiry is set again only once a tenth of it has passed since the last
-- time (field 'e'): three PEXPIREs every update took some 40% more Lua
-- time (bench/state.py --expire-after). So a lead goes 0.9 to 1 EXPIRE_MS
-- after its last change. `first` says
-- the lead's first activity made its seen and outs keys just now.
local function keep(key, seen, outs, st, first)
  local set_at = tonumber(st.saved.e)
  if EXPIRE_MS == nil then
    if set_at then
      -- Expiry was turned off since: the lead stays.
      call('PERSIST', key)
      call('PERSIST', seen)
      call('PERSIST', outs)
      call('HDEL', key, 'e')
    end
    return
  end
  local fresh = set_at and NOW_MS >= set_at and NOW_MS - set_at < EXPIRE_MS / 10
  if fresh and not first then return end
  call('PEXPIRE', key, EXPIRE_MS)
  call('PEXPIRE', seen, EXPIRE_MS)
  call('PEXPIRE', outs, EXPIRE_MS)
  call('HSET', key, 'e', NOW_TEXT)
end

-- The accumulator names in order, sorted once per load; `add_name` keeps
-- the order as accumulators come, which costs less than sorting again.
local function sorted_names(st)
  if st.names == nil then
    local names = {}
    for name in pairs(st.acc) do names[#names + 1] = name end
    table.sort(names, name_less)
    st.names = names
  end
  return st.names
end

local function add_name(st, name)
  local names = st.names
  if names == nil then return end
  local i = #names
  if name_less == nil then
    while i > 0 and names[i] > name do i = i - 1 end
  else
    while i > 0 and name_less(name, names[i]) do i = i - 1 end
  end
  insert(names, i + 1, name)
end

local function engagement(st)
  local names, acc, total = sorted_names(st), st.acc, 0
  for i = 1, #names do
    local a = acc[names[i]]
    if a.folded then
      total = total + a[1]
    else
      total = total + a.share * a[2]
    end
  end
  return total
end

local function advance(st, to)
  local elapsed, names, acc = to - st.ref, sorted_names(st), st.acc
  for i = 1, #names do
    local a = acc[names[i]]
    if a.folded then
      a[1] = a[1] * 2 ^ (-elapsed / a[2])
    else
      a[2] = a[2] * 2 ^ (-elapsed / a[3])
    end
    a.text = nil
  end
  st.ref, st.ref_text = to, num(to)
end

local function is_open(w, ref)
  return w.folded or w[5] + LATENESS > ref
end

local folded_tails = {}

local function folded_tail(hl)
  local tail = folded_tails[hl]
  if tail == nil then
    tail = ' ' .. num(hl)
    folded_tails[hl] = tail
  end
  return tail
end

local function fold(st, name, w)
  local acc = st.acc
  local base = 'b:' .. string.match(name, '^w:([^:]+):')
  local b = acc[base]
  acc[base] = {(b and b[1] or 0) + w.share * w[2], w[3], folded = true,
               tail = folded_tail(w[3])}
  acc[name] = nil
  st.deleted[#st.deleted + 1] = name
  return b == nil and base or nil
end

-- Windows fold in name order, as the Python twin folds them.
local function close_windows(st)
  local names, acc, ref = sorted_names(st), st.acc, st.ref
  local first = nil
  for i = 1, #names do
    if not is_open(acc[names[i]], ref) then first = i break end
  end
  if first == nil then return end

  local kept, bases = {}, {}
  for i = 1, first - 1 do kept[i] = names[i] end
  for i = first, #names do
    local name = names[i]
    local w = acc[name]
    if is_open(w, ref) then
      kept[#kept + 1] = name
    else
      bases[#bases + 1] = fold(st, name, w)
    end
  end
  st.names = kept
  for i = 1, #bases do add_name(st, bases[i]) end
end

local function add_points(st, at, rule)
  local hl = rule.hl
  local worth = rule.points * 2 ^ (-(st.ref - at) / hl)
  if rule.cap == nil then
    local name = rule.folded_name
    local b = st.acc[name]
    st.acc[name] = {(b and b[1] or 0) + worth, hl, folded = true,
                    tail = rule.folded_tail}
    if b == nil then add_name(st, name) end
    return worth, false
  end
  local cap, window = rule.cap, rule.window
  local bucket = math.floor(at / window)
  local name = rule.window_name .. format('%d', bucket)
  local w = st.acc[name]
  if w == nil then
    local ends = (bucket + 1) * window
    w = {0, 0, hl, cap, ends, share = 1,
         tail = rule.window_tail .. num(ends)}
    st.acc[name] = w
    add_name(st, name)
  end
  local before = w.share * w[2]
  w[1] = w[1] + rule.points
  w[2] = w[2] + worth
  w.share = share(w[4], w[1])
  w.text, w.raw_text = nil, nil
  local after = w.share * w[2]
  return after - before, math.abs(w[1]) > w[4]
end

-- Params.stays: an MQL keeps the flag in the band, with a share of the
-- engagement it needed to come in.
local function stays(score, eng)
  return score >= T - H and (STAY_ENGAGEMENT == nil or eng >= STAY_ENGAGEMENT)
end

local function settle(st, applied, lost, capped, late, fell)
  local previous_text = st.score_text
  local eng = engagement(st)
  local score = FW * st.fit + EW * eng
  local was = st.mql
  if was and not fell then
    st.mql = stays(score, eng)
  else
    st.mql = score >= T and (MIN_ENGAGEMENT == nil or eng >= MIN_ENGAGEMENT)
  end
  st.score_text = num(score)
  return table.concat({'applied', previous_text, st.score_text, st.fit_text,
    num(eng), num(applied), num(lost), capped and '1' or '0', tostring(late),
    was and '1' or '0', st.mql and '1' or '0', st.ref_text or '0'}, '|')
end

local function as_duplicate(encoded)
  return 'duplicate' .. string.match(encoded, '^[^|]*(|.*)$')
end

local function remembered(st, seen, outs, op_id)
  if st.ref == nil then return nil end
  -- The score is the lead's newest time when the update was applied.
  local applied_at = call('ZSCORE', seen, op_id)
  if not applied_at or tonumber(applied_at) < st.ref - HORIZON then return nil end
  local encoded = call('HGET', outs, op_id)
  if not encoded then return nil end
  return as_duplicate(encoded)
end

-- Ids expire only as the lead's newest time moves, so only then can there be
-- any to prune.
local function forget_old(st, seen, outs)
  local limit = '(' .. num(st.ref - HORIZON)
  local old = call('ZRANGEBYSCORE', seen, '-inf', limit)
  call_in_parts('HDEL', outs, old)
  if #old > 0 then call('ZREMRANGEBYSCORE', seen, '-inf', limit) end
end

local function activity(key, seen, outs, op_id, at, rule)
  local st = load(key)
  local again = remembered(st, seen, outs, op_id)
  if again then return again end

  local lost, moved, fell = 0, false, false
  local first = st.ref == nil
  if first then st.ref, st.ref_text = at, num(at) end
  if at > st.ref then
    local before = engagement(st)
    advance(st, at)
    local after = engagement(st)
    lost = before - after
    moved = true
    -- Decay took a quiet MQL out of the band before this event (Params.fell_out).
    fell = st.mql and not stays(FW * st.fit + EW * after, after)
  end
  local behind, late = st.ref - at, 0
  if behind > 0 then late = (behind <= LATENESS) and 1 or 2 end

  local applied, capped = add_points(st, at, rule)
  close_windows(st)
  local encoded = settle(st, applied, lost, capped, late, fell)

  save(key, st)
  -- By the lead's newest time, not the event's: an event older than the
  -- horizon is still recognised when it comes again (scorer.lead does so).
  call('ZADD', seen, st.ref_text, op_id)
  call('HSET', outs, op_id, encoded)
  if moved then forget_old(st, seen, outs) end
  keep(key, seen, outs, st, first)
  return encoded
end

-- Records stamped alike are ordered by digest, as in scorer.lead.apply_fit;
-- a state from before digests has none, which orders first.
local function fit_update(key, seen, outs, at, fit, digest)
  local st = load(key)
  local fa, fd = tonumber(st.fa_text), st.fd or ''
  local same = at == fa and digest == fd
  if fa ~= nil and (at < fa or at == fa and not bytes_less(fd, digest)) then
    if same and st.fo then return as_duplicate(st.fo) end
    return ''
  end
  st.fa_text, st.fd = num(at), digest
  local change = fit - st.fit
  st.fit, st.fit_text = fit, num(fit)
  local encoded = settle(st, change, 0, false, 0)
  if st.ref == nil then
    encoded = string.gsub(encoded, '|[^|]*$', '|' .. st.fa_text)
  end
  st.fo = encoded
  save(key, st)
  keep(key, seen, outs, st, false)
  return encoded
end

-- How long a tombstone's outcome is kept after the erasure (seconds): long
-- enough for the same tombstone, redelivered after a crash, to publish the
-- same outputs; short, since it keeps the lead's last score and MQL flag.
local ERASURE_MEMORY_S = 86400

-- A tombstone: the lead's keys go. What remains is the erasure's outcome,
-- under 'x' with the tombstone's id, until it expires or the lead is back.
local function forget(key, seen, outs, op_id, at)
  local st = load(key)
  if st.ref == nil and st.fa_text == nil then
    local memory = st.saved.x
    if memory == nil then return '' end
    local gap = find(memory, '\n', 1, true)
    if sub(memory, 1, gap - 1) ~= op_id then return '' end
    return as_duplicate(sub(memory, gap + 1))
  end

  local encoded = table.concat({'applied', st.score_text, '0', '0', '0', '0',
    '0', '0', '0', st.mql and '1' or '0', '0', num(at)}, '|')
  call('DEL', key, seen, outs)
  call('HSET', key, 'x', op_id .. '\n' .. encoded)
  call('EXPIRE', key, ERASURE_MEMORY_S)
  return encoded
end

local results = {}
local first = 9 + 5 * RULE_COUNT
for i = 0, #KEYS / 3 - 1 do
  local key, seen, outs = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local update = ARGV[first + i]
  -- `id` is an activity's op id, a fit change's digest.
  local kind, at, what, id = string.match(update, '^(%a) (%S+) (%S+) (.*)$')
  if kind == 'a' then
    results[#results + 1] = activity(key, seen, outs, id, tonumber(at),
                                     rules[number(what)])
  elseif kind == 'f' then
    results[#results + 1] = fit_update(key, seen, outs, tonumber(at),
                                       tonumber(what), id)
  else
    results[#results + 1] = forget(key, seen, outs, id, tonumber(at))
  end
end
return results
""".replace(
    # scorer.lead's constant, so that the twins cannot drift apart.
    "@STAY_ENGAGEMENT_SHARE@",
    repr(STAY_ENGAGEMENT_SHARE),
)


class RedisStore:
    """The production lead store: Redis (standalone or cluster)."""

    def __init__(
        self,
        client: Client | Callable[[], Client],
        params: Params,
        key_prefix: str = "scorer",
        ops_per_call: int = 64,
        script: str = APPLY_UPDATES,
        expire_ms: int | None = None,
    ) -> None:
        """`client` is a Redis client, or a function that makes one.

        A cluster client can only be made while a node it is given answers
        (redis-py reads the slot map at once), so the live scorer passes the
        function: the store makes the client at its first call that reaches
        the node, and a call before that fails like one Redis did not answer.
        `script` is the Lua text to run; benchmarks pass other versions.
        `expire_ms`: how long a lead's keys live after an update changed it
        (None: for ever).
        """
        self._client: Client | None = None
        self._make_client = client if callable(client) else None
        self._cluster_calls: ClusterCalls | None = None
        if not callable(client):
            self._use(client)
        self.params = params
        self.prefix = key_prefix
        self.ops_per_call = ops_per_call
        self._global_args = [
            repr(params.fit_weight),
            repr(params.engagement_weight),
            repr(params.threshold),
            repr(params.hysteresis),
            str(params.lateness_ms),
            str(params.dedupe_horizon_ms),
            "" if params.min_engagement is None else repr(params.min_engagement),
        ]
        self.expire_ms = expire_ms
        self.script = script
        self._sha = ""

    @property
    def client(self) -> Client:
        """The Redis client; made now if it was not given and is not made yet."""
        if self._client is not None:
            return self._client
        assert self._make_client is not None
        try:
            client = self._make_client()
        except (redis.RedisError, RedisClusterException) as exc:
            raise StateStoreError(f"cannot connect to Redis: {exc}") from exc
        self._use(client)
        return client

    @property
    def cluster(self) -> bool:
        return self._cluster_calls is not None

    def _use(self, client: Client) -> None:
        self._client = client
        if isinstance(client, redis.RedisCluster):
            self._cluster_calls = ClusterCalls(client)

    def load_script(self) -> None:
        """Load the script (again: after a restart or SCRIPT FLUSH)."""
        # Unset until both steps pass, so that the next call tries again.
        self._sha = ""
        client = self.client
        try:
            sha = str(client.script_load(self.script))
        except (redis.RedisError, RedisClusterException) as exc:
            raise StateStoreError(f"cannot load the scoring script: {exc}") from exc
        _refuse_eviction(client)
        self._sha = sha

    def keys(self, lead_id: str) -> tuple[str, str, str]:
        tagged = f"{self.prefix}:{{{hash_tag(lead_id)}}}"
        return f"{tagged}:s", f"{tagged}:seen", f"{tagged}:out"

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        """Apply a batch, in order per lead; one pipeline round trip."""
        if not updates:
            return []
        if not self._sha:
            self.load_script()
        calls = self._calls(updates)
        replies = self._execute(updates, calls)
        return self._outcomes(len(updates), calls, replies)

    def snapshot(self, lead_id: str, as_of_ms: int | None = None) -> Snapshot | None:
        try:
            raw = self.client.hgetall(self.keys(lead_id)[0])
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot read lead_id={lead_id}: {exc}") from exc
        state = parse_state(raw)
        if state.ref_ms is None and state.fit_at_ms is None:
            return None  # nothing, or only the memory of an erasure
        return evaluate(lead_id, state, self.params, as_of_ms)

    def lead_ids(self) -> Iterator[str]:
        """The leads held; not those of which only an erasure is remembered."""
        pattern = f"{self.prefix}:{{*}}:s"
        keys = [_text(k) for k in self.client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), LEAD_IDS_PER_ROUND_TRIP):
            chunk = keys[start : start + LEAD_IDS_PER_ROUND_TRIP]
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                pipe.hexists(key, "s")
            for key, held in zip(chunk, pipe.execute(), strict=True):
                if held:
                    yield lead_of_tag(key[len(self.prefix) + 2 : -3])

    def _calls(self, updates: Sequence[Update]) -> list[list[int]]:
        """Group update positions into script calls, each lead's in one call.

        The calls of a round trip succeed or fail one by one: under OOM, an
        ACL or MISCONF refusal, a call can fail while a later one runs. Were
        a lead's updates split between the two, the retry would apply its
        earlier updates after its later ones, and publish other scores than
        the consumed order gives. So a lead's updates share a call, in order,
        even when they are more than `ops_per_call`.
        """
        by_lead: dict[str, list[int]] = {}
        for position, update in enumerate(updates):
            by_lead.setdefault(update.lead_id, []).append(position)
        by_slot: dict[int, list[list[int]]] = defaultdict(list)
        for lead_id, positions in by_lead.items():
            # The slot matters on a cluster only; CRC16 is not free.
            slot = key_slot(self.keys(lead_id)[0].encode()) if self.cluster else 0
            by_slot[slot].append(positions)

        calls: list[list[int]] = []
        for leads in by_slot.values():
            call: list[int] = []
            for positions in leads:
                if call and len(call) + len(positions) > self.ops_per_call:
                    calls.append(call)
                    call = []
                call += positions
            calls.append(call)
        return calls

    def _execute(self, updates: Sequence[Update], calls: list[list[int]]) -> list[Any]:
        for attempt in (1, 2):
            commands = [
                self._command([updates[position] for position in call])
                for call in calls
            ]
            try:
                replies = self._send(commands)
            except (redis.RedisError, RedisClusterException) as exc:
                # A cluster's own errors (keys of one call in different slots,
                # say) are not RedisErrors; they must not escape the retry.
                raise StateStoreError(f"Redis pipeline failed: {exc}") from exc
            missing = any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            )
            if not missing:
                return replies
            # SCRIPT FLUSH or a restart dropped the script. Calls that did run
            # are remembered by their update ids, so running all again is safe.
            log.warning(
                "scoring script missing in Redis; reloading attempt=%d", attempt
            )
            self.load_script()
        raise StateStoreError("the scoring script keeps disappearing from Redis")

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One round trip (per node, on a cluster); an error is a reply."""
        if self._cluster_calls is not None:
            return self._cluster_calls.send(commands)
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    def _command(self, call: list[Update]) -> tuple[Any, ...]:
        """The EVALSHA of one script call."""
        keys: list[str] = []
        rules: dict[ScoringRule, int] = {}
        per_update: list[str] = []
        for update in call:
            keys.extend(self.keys(update.lead_id))
            per_update.append(_update_arg(update, rules))
        rule_args = [arg for rule in rules for arg in _rule_args(rule)]
        args = [*self._global_args, str(len(rules)), *rule_args, *per_update]
        args.append(self._expiry_arg())
        return ("EVALSHA", self._sha, len(keys), *keys, *args)

    def _expiry_arg(self) -> str:
        if self.expire_ms is None:
            return ""
        # Redis's TIME in a script would be one more call per script call.
        return f"{self.expire_ms} {time.time_ns() // 1_000_000}"

    def _outcomes(
        self, count: int, calls: list[list[int]], replies: list[Any]
    ) -> list[Outcome | None]:
        outcomes: list[Outcome | None] = [None] * count
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                raise StateStoreError(f"scoring script failed: {reply}") from reply
            for position, encoded in zip(call, reply, strict=True):
                text = encoded.decode() if isinstance(encoded, bytes) else encoded
                outcomes[position] = Outcome.decode(text) if text else None
        return outcomes


def _refuse_eviction(client: Client) -> None:
    """Stop if Redis may evict keys (on any master of a cluster).

    An evicted key takes a lead's score, or its memory of applied events
    (a redelivered event would count twice), or of an erasure, and nothing
    tells: the state is only right under maxmemory-policy noeviction, or
    with no maxmemory at all. Checked wherever the script is loaded: at
    start-up, and after a Redis restart or a SCRIPT FLUSH.
    """
    try:
        if isinstance(client, redis.RedisCluster):
            # get_primaries is untyped in redis-py (no-untyped-call).
            infos = {
                node.name: client.get_redis_connection(node).info("memory")
                for node in client.get_primaries()  # type: ignore[no-untyped-call]
            }
        else:
            infos = {"": client.info("memory")}
    except redis.ResponseError as exc:
        # INFO is in the @dangerous ACL category, which a user may lack.
        log.warning(
            "cannot check Redis's maxmemory-policy (%s); it must be noeviction", exc
        )
        return
    except (redis.RedisError, RedisClusterException) as exc:
        raise StateStoreError(f"cannot read Redis's memory settings: {exc}") from exc

    for node, info in infos.items():
        policy, limit = info.get("maxmemory_policy"), int(info.get("maxmemory", 0))
        if limit and policy != "noeviction":
            where = f" {node}" if node else ""
            raise StateStoreError(
                f"Redis{where} may evict keys (maxmemory {limit}, "
                f"maxmemory-policy {policy}): an evicted key loses a lead's "
                "score or its memory of applied events; set maxmemory-policy "
                "noeviction, or no maxmemory"
            )


def hash_tag(lead_id: str) -> str:
    """The text between the braces of a lead's keys.

    Redis Cluster hashes the text from a key's first '{' to the next '}';
    when that is empty it hashes the whole key, and a lead's three keys would
    land in different slots. So an id that starts with '}' is written behind
    a '~', and so is one that starts with '~', which keeps the mapping one to
    one (`lead_of_tag` undoes it). Every other id is its own tag.
    """
    if lead_id[:1] in ("}", ESCAPE):
        return ESCAPE + lead_id
    return lead_id


def lead_of_tag(tag: str) -> str:
    return tag[1:] if tag[:1] == ESCAPE else tag


def _update_arg(update: Update, rules: dict[ScoringRule, int]) -> str:
    """One update as the script reads it; numbers its rule in `rules`."""
    if isinstance(update, ActivityUpdate):
        number = rules.setdefault(update.rule, len(rules) + 1)
        return f"a {update.at_ms} {number} {update.op_id}"
    if isinstance(update, FitUpdate):
        return f"f {update.at_ms} {update.fit!r} {update.digest}"
    assert isinstance(update, Forget)
    return f"x {update.at_ms} 0 {update.op_id}"


@functools.cache
def _rule_args(rule: ScoringRule) -> tuple[str, str, str, str, str]:
    return (
        rule.name,
        repr(rule.points),
        str(rule.half_life_ms),
        "" if rule.cap_points is None else repr(rule.cap_points),
        "" if rule.cap_window_ms is None else str(rule.cap_window_ms),
    )


def parse_state(raw: dict[Any, Any]) -> LeadState:
    """A lead's Redis hash as the `LeadState` the Python model works on."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    state = LeadState(
        ref_ms=int(float(fields["r"])) if "r" in fields else None,
        fit=float(fields.get("fit", "0")),
        fit_at_ms=int(float(fields["fa"])) if "fa" in fields else None,
        fit_digest=fields.get("fd", ""),
        fit_outcome=Outcome.decode(fields["fo"]) if "fo" in fields else None,
        is_mql=fields.get("m") == "1",
        score=float(fields.get("s", "0")),
    )
    for name, value in fields.items():
        parts = [float(p) for p in value.split()] if name[:2] in ("b:", "w:") else []
        if name.startswith("b:"):
            state.folded[name] = (parts[0], int(parts[1]))
        elif name.startswith("w:"):
            state.windows[name] = Window(
                parts[0], parts[1], int(parts[2]), parts[3], int(parts[4])
            )
    return state


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
