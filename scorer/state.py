"""Lead state in Redis: one Lua script applies score updates atomically.

Each lead has three keys sharing the hash tag ``{lead_id}``, so they live in
one Redis Cluster slot and one script may touch them together:
- ``<prefix>:{<lead>}:s``, a hash: the state described in `scorer.lead`;
- ``<prefix>:{<lead>}:seen``, a sorted set: recent update ids by event time;
- ``<prefix>:{<lead>}:out``, a hash: the outcome of each remembered update, so
  a redelivered event re-publishes exactly what the first delivery did.

A script call carries up to `ops_per_call` updates and applies them one after
another; on a cluster the updates of one call are those of one slot. The
calls of a batch go out in one pipeline: one round trip per batch.
"""

import functools
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.crc import key_slot

from scorer.errors import StateStoreError
from scorer.events import Forget
from scorer.lead import (
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

# APPLY_UPDATES: the twin of scorer.lead.apply_activity / apply_fit. Keep the
# arithmetic in the same order as the Python so both give identical doubles.
# KEYS, three per update i: [3i-2] state hash, [3i-1] seen-ids sorted set,
#   [3i] outcomes hash.
# ARGV[1..6]: fit_weight, engagement_weight, threshold, hysteresis,
#   allowed_lateness_ms, dedupe_horizon_ms.
# ARGV[7]: the number R of rules the call's activity updates use; then five
#   per rule: name, points, half_life_ms, cap, window_ms (cap and window are
#   '' for an uncapped rule).
# ARGV from 8 + 5R, one per update: 'a <at_ms> <rule number> <op_id>' for an
#   activity, 'f <at_ms> <fit> <op_id>' for a fit change, 'x' for a forget.
#   The op id is last, so it may hold spaces.
# Returns one encoded Outcome per update; '' for a forget or a stale fit.
#
# Speed (bench/pipeline.py): numbers are formatted with %.17g only when they
# change, a state hash field is written only when its text changed, the
# accumulator names are sorted once per change of the set, and old update
# ids are pruned only when the lead's newest time moved.
APPLY_UPDATES = r"""
local FW, EW = tonumber(ARGV[1]), tonumber(ARGV[2])
local T, H = tonumber(ARGV[3]), tonumber(ARGV[4])
local LATENESS, HORIZON = tonumber(ARGV[5]), tonumber(ARGV[6])
local RULE_COUNT = tonumber(ARGV[7])

local function num(x) return string.format('%.17g', x) end

local rules = {}
for r = 1, RULE_COUNT do
  local base = 2 + 5 * r
  local hl = tonumber(ARGV[base + 3])
  rules[r] = {name = ARGV[base + 1], points = tonumber(ARGV[base + 2]), hl = hl,
              cap = tonumber(ARGV[base + 4]), window = tonumber(ARGV[base + 5]),
              folded_tail = ' ' .. num(hl)}
end

-- An accumulator is an array of numbers (b: value, half-life; w: raw,
-- decayed, half-life, cap, end) with `tail`, the text of the numbers no
-- update changes, and `text`, its saved text while its values are unchanged.
local function load(key)
  local flat = redis.call('HGETALL', key)
  local st = {acc = {}, deleted = {}, saved = {}}
  for i = 1, #flat, 2 do
    local name, text = flat[i], flat[i + 1]
    local tag = string.sub(name, 1, 2)
    if tag == 'b:' then
      local value, tail = string.match(text, '^(%S+)( .*)$')
      st.acc[name] = {tonumber(value), tonumber(tail), folded = true,
                      tail = tail, text = text}
    elseif tag == 'w:' then
      local raw, decayed, tail = string.match(text, '^(%S+) (%S+)( .*)$')
      local hl, cap, ends = string.match(tail, '^ (%S+) (%S+) (%S+)$')
      st.acc[name] = {tonumber(raw), tonumber(decayed), tonumber(hl),
                      tonumber(cap), tonumber(ends), tail = tail, text = text,
                      raw_text = raw}
    else
      st.saved[name] = text
    end
  end
  local saved = st.saved
  st.ref, st.ref_text = tonumber(saved.r), saved.r
  st.fit = tonumber(saved.fit) or 0
  st.fit_text = saved.fit or num(st.fit)
  st.fa, st.fa_text = tonumber(saved.fa), saved.fa
  st.fo = saved.fo
  st.mql = saved.m == '1'
  st.score = tonumber(saved.s) or 0
  st.score_text = saved.s or num(st.score)
  return st
end

local function acc_text(a)
  if a.text then return a.text end
  if a.folded then return num(a[1]) .. a.tail end
  return (a.raw_text or num(a[1])) .. ' ' .. num(a[2]) .. a.tail
end

local function save(key, st)
  local args = {'HSET', key}
  local function put(name, text)
    if text ~= nil and text ~= st.saved[name] then
      args[#args + 1] = name
      args[#args + 1] = text
    end
  end
  put('fit', st.fit_text)
  put('m', st.mql and '1' or '0')
  put('s', st.score_text)
  put('r', st.ref_text)
  put('fa', st.fa_text)
  put('fo', st.fo)
  for name, a in pairs(st.acc) do
    if not a.text then
      args[#args + 1] = name
      args[#args + 1] = acc_text(a)
    end
  end
  if #args > 2 then redis.call(unpack(args)) end
  if #st.deleted > 0 then redis.call('HDEL', key, unpack(st.deleted)) end
end

local function sorted_names(st)
  if st.names == nil then
    local names = {}
    for name in pairs(st.acc) do names[#names + 1] = name end
    table.sort(names)
    st.names = names
  end
  return st.names
end

local function share(cap, raw)
  if raw == 0 then return 1 end
  return math.min(1, cap / math.abs(raw))
end

local function engagement(st)
  local total = 0
  for _, name in ipairs(sorted_names(st)) do
    local a = st.acc[name]
    if a.folded then
      total = total + a[1]
    else
      total = total + share(a[4], a[1]) * a[2]
    end
  end
  return total
end

local function advance(st, to)
  local elapsed = to - st.ref
  for _, a in pairs(st.acc) do
    if a.folded then
      a[1] = a[1] * 2 ^ (-elapsed / a[2])
    else
      a[2] = a[2] * 2 ^ (-elapsed / a[3])
    end
    a.text = nil
  end
  st.ref, st.ref_text = to, num(to)
end

local function close_windows(st)
  local changed = false
  for _, name in ipairs(sorted_names(st)) do
    local w = st.acc[name]
    if not w.folded and not (w[5] + LATENESS > st.ref) then
      local base = 'b:' .. string.match(name, '^w:([^:]+):')
      local b = st.acc[base] or {0, w[3]}
      st.acc[base] = {b[1] + share(w[4], w[1]) * w[2], w[3], folded = true,
                      tail = ' ' .. num(w[3])}
      st.acc[name] = nil
      st.deleted[#st.deleted + 1] = name
      changed = true
    end
  end
  if changed then st.names = nil end
end

local function add_points(st, at, rule)
  local hl = rule.hl
  local worth = rule.points * 2 ^ (-(st.ref - at) / hl)
  if rule.cap == nil then
    local name = 'b:' .. rule.name
    local b = st.acc[name]
    if b == nil then
      b = {0, hl}
      st.names = nil
    end
    st.acc[name] = {b[1] + worth, hl, folded = true, tail = rule.folded_tail}
    return worth, false
  end
  local cap, window = rule.cap, rule.window
  local bucket = math.floor(at / window)
  local name = 'w:' .. rule.name .. ':' .. string.format('%d', bucket)
  local w = st.acc[name]
  if w == nil then
    local ends = (bucket + 1) * window
    w = {0, 0, hl, cap, ends,
         tail = ' ' .. num(hl) .. ' ' .. num(cap) .. ' ' .. num(ends)}
    st.acc[name] = w
    st.names = nil
  end
  local before = share(w[4], w[1]) * w[2]
  w[1] = w[1] + rule.points
  w[2] = w[2] + worth
  w.text, w.raw_text = nil, nil
  local after = share(w[4], w[1]) * w[2]
  return after - before, math.abs(w[1]) > w[4]
end

local function settle(st, applied, lost, capped, late)
  local previous_text = st.score_text
  local eng = engagement(st)
  local score = FW * st.fit + EW * eng
  local was = st.mql
  if was then st.mql = score >= T - H else st.mql = score >= T end
  st.score, st.score_text = score, num(score)
  return table.concat({'applied', previous_text, st.score_text, st.fit_text,
    num(eng), num(applied), num(lost), capped and '1' or '0', tostring(late),
    was and '1' or '0', st.mql and '1' or '0', st.ref_text or '0'}, '|')
end

local function as_duplicate(encoded)
  return 'duplicate' .. string.match(encoded, '^[^|]*(|.*)$')
end

local function remembered(st, seen, outs, op_id)
  if st.ref == nil then return nil end
  local at = redis.call('ZSCORE', seen, op_id)
  if not at or tonumber(at) < st.ref - HORIZON then return nil end
  local encoded = redis.call('HGET', outs, op_id)
  if not encoded then return nil end
  return as_duplicate(encoded)
end

-- Ids expire only as the lead's newest time moves, so only then can there be
-- any to prune. (An id that arrives already expired waits for that moment;
-- `remembered` ignores it meanwhile.)
local function forget_old(st, seen, outs)
  local limit = '(' .. num(st.ref - HORIZON)
  local old = redis.call('ZRANGEBYSCORE', seen, '-inf', limit)
  for i = 1, #old, 500 do
    redis.call('HDEL', outs, unpack(old, i, math.min(i + 499, #old)))
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', seen, '-inf', limit) end
end

local function activity(key, seen, outs, op_id, at, rule)
  local st = load(key)
  local again = remembered(st, seen, outs, op_id)
  if again then return again end

  local lost, moved = 0, false
  if st.ref == nil then st.ref, st.ref_text = at, num(at) end
  if at > st.ref then
    local before = engagement(st)
    advance(st, at)
    lost = before - engagement(st)
    moved = true
  end
  local behind, late = st.ref - at, 0
  if behind > 0 then late = (behind <= LATENESS) and 1 or 2 end

  local applied, capped = add_points(st, at, rule)
  close_windows(st)
  local encoded = settle(st, applied, lost, capped, late)

  save(key, st)
  redis.call('ZADD', seen, at, op_id)
  redis.call('HSET', outs, op_id, encoded)
  if moved then forget_old(st, seen, outs) end
  return encoded
end

local function fit_update(key, at, fit)
  local st = load(key)
  if st.fa ~= nil and at <= st.fa then
    if at == st.fa and st.fo then return as_duplicate(st.fo) end
    return ''
  end
  st.fa, st.fa_text = at, num(at)
  local change = fit - st.fit
  st.fit, st.fit_text = fit, num(fit)
  local encoded = settle(st, change, 0, false, 0)
  if st.ref == nil then
    encoded = string.gsub(encoded, '|[^|]*$', '|' .. st.fa_text)
  end
  st.fo = encoded
  save(key, st)
  return encoded
end

local results = {}
local first = 8 + 5 * RULE_COUNT
for i = 0, #KEYS / 3 - 1 do
  local key, seen, outs = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local update = ARGV[first + i]
  local kind, at, what, op_id = string.match(update, '^(%a) (%S+) (%S+) (.*)$')
  if kind == 'a' then
    results[#results + 1] = activity(key, seen, outs, op_id, tonumber(at),
                                     rules[tonumber(what)])
  elseif kind == 'f' then
    results[#results + 1] = fit_update(key, tonumber(at), tonumber(what))
  else
    redis.call('DEL', key, seen, outs)
    results[#results + 1] = ''
  end
end
return results
"""


class RedisStore:
    """The production lead store: Redis (standalone or cluster)."""

    def __init__(
        self,
        client: "redis.Redis | redis.RedisCluster",
        params: Params,
        key_prefix: str = "scorer",
        ops_per_call: int = 64,
        script: str = APPLY_UPDATES,
    ) -> None:
        """`script` is the Lua text to run; benchmarks pass other versions."""
        self.client = client
        self.params = params
        self.prefix = key_prefix
        self.ops_per_call = ops_per_call
        self.cluster = isinstance(client, redis.RedisCluster)
        self._global_args = [
            repr(params.fit_weight),
            repr(params.engagement_weight),
            repr(params.threshold),
            repr(params.hysteresis),
            str(params.lateness_ms),
            str(params.dedupe_horizon_ms),
        ]
        self.script = script
        self._sha = ""

    def load_script(self) -> None:
        """Load the script (again: after a restart or SCRIPT FLUSH)."""
        try:
            self._sha = str(self.client.script_load(self.script))
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot load the scoring script: {exc}") from exc

    def keys(self, lead_id: str) -> tuple[str, str, str]:
        tagged = f"{self.prefix}:{{{lead_id}}}"
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
        if not raw:
            return None
        return evaluate(lead_id, parse_state(raw), self.params, as_of_ms)

    def lead_ids(self) -> Iterator[str]:
        pattern = f"{self.prefix}:{{*}}:s"
        for key in self.client.scan_iter(match=pattern, count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            yield text[len(self.prefix) + 2 : -3]

    def _calls(self, updates: Sequence[Update]) -> list[list[int]]:
        """Group update positions into script calls, keeping per-lead order."""
        groups: dict[int, list[int]] = defaultdict(list)
        for position, update in enumerate(updates):
            # The slot matters on a cluster only; CRC16 per update is not free.
            slot = (
                key_slot(self.keys(update.lead_id)[0].encode()) if self.cluster else 0
            )
            groups[slot].append(position)
        size = self.ops_per_call
        return [
            members[start : start + size]
            for members in groups.values()
            for start in range(0, len(members), size)
        ]

    def _execute(self, updates: Sequence[Update], calls: list[list[int]]) -> list[Any]:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                self._queue(pipe, [updates[position] for position in call])
            try:
                replies = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:
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

    def _queue(self, pipe: Any, call: list[Update]) -> None:
        keys: list[str] = []
        rules: dict[ScoringRule, int] = {}
        per_update: list[str] = []
        for update in call:
            keys.extend(self.keys(update.lead_id))
            per_update.append(_update_arg(update, rules))
        rule_args = [arg for rule in rules for arg in _rule_args(rule)]
        args = [*self._global_args, str(len(rules)), *rule_args, *per_update]
        pipe.evalsha(self._sha, len(keys), *keys, *args)

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


def _update_arg(update: Update, rules: dict[ScoringRule, int]) -> str:
    """One update as the script reads it; numbers its rule in `rules`."""
    if isinstance(update, ActivityUpdate):
        number = rules.setdefault(update.rule, len(rules) + 1)
        return f"a {update.at_ms} {number} {update.op_id}"
    if isinstance(update, FitUpdate):
        return f"f {update.at_ms} {update.fit!r} {update.op_id}"
    assert isinstance(update, Forget)
    return "x"


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
