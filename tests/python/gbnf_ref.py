"""gbnf_ref.py - a small independent GBNF matcher (whole-text matches only).

Reads llama.cpp's GBNF notation (rules `name ::= ...`, "literals", [classes],
`.`, groups, `|`, `*` `+` `?` `{m}` `{m,}` `{m,n}`, `#` comments) and tells
whether a text is a complete match of `root`, by computing the set of end
positions each piece can reach from a start position. The JSON Schema test
uses it to check the converter's GBNF on its own, beside the engine's
`baichuan grammar --match`.
"""

import re

_ESC = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


class Grammar:
    def __init__(self, text):
        self.rules = {}
        self.text = text
        self.pos = 0
        self._parse()
        self.memo = {}
        self.s = ""

    # --- parsing -------------------------------------------------------
    def _ws(self, newlines):
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c == "#":
                while self.pos < len(t) and t[self.pos] != "\n":
                    self.pos += 1
            elif c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            else:
                break

    def _name(self):
        m = re.compile(r"[a-zA-Z0-9-]+").match(self.text, self.pos)
        if not m:
            raise ValueError("expected a name at %d: %r" % (self.pos, self.text[self.pos:self.pos + 30]))
        self.pos = m.end()
        return m.group(0)

    def _char(self):
        t = self.text
        c = t[self.pos]
        if c != "\\":
            self.pos += 1
            return c
        e = t[self.pos + 1]
        if e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            v = int(t[self.pos + 2:self.pos + 2 + n], 16)
            self.pos += 2 + n
            return chr(v)
        if e not in _ESC:
            raise ValueError("unknown escape \\%s at %d" % (e, self.pos))
        self.pos += 2
        return _ESC[e]

    def _parse(self):
        self._ws(True)
        while self.pos < len(self.text):
            name = self._name()
            self._ws(False)
            if not self.text.startswith("::=", self.pos):
                raise ValueError("expected ::= after %s" % name)
            self.pos += 3
            self.rules[name] = self._alt(False)
            self._ws(True)
        for n in self._refs_all():
            if n not in self.rules:
                raise ValueError("undefined rule %s" % n)

    def _refs_all(self):
        out = set()

        def walk(node):
            if node[0] == "ref":
                out.add(node[1])
            elif node[0] in ("seq", "alt"):
                for x in node[1]:
                    walk(x)
            elif node[0] == "rep":
                walk(node[1])
        for r in self.rules.values():
            walk(r)
        return out

    def _alt(self, nested):
        alts = [self._seq(nested)]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            alts.append(self._seq(nested))
        return alts[0] if len(alts) == 1 else ("alt", alts)

    def _seq(self, nested):
        items = []
        t = self.text
        while True:
            self._ws(nested)
            if self.pos >= len(t) or t[self.pos] in "|)\n\r":
                break
            c = t[self.pos]
            if c == '"':
                self.pos += 1
                s = ""
                while t[self.pos] != '"':
                    s += self._char()
                self.pos += 1
                item = ("lit", s)
            elif c == "[":
                self.pos += 1
                neg = t[self.pos] == "^"
                if neg:
                    self.pos += 1
                ranges = []
                while t[self.pos] != "]":
                    lo = self._char()
                    hi = lo
                    if t[self.pos] == "-" and t[self.pos + 1] != "]":
                        self.pos += 1
                        hi = self._char()
                    ranges.append((ord(lo), ord(hi)))
                self.pos += 1
                item = ("cls", neg, ranges)
            elif c == ".":
                self.pos += 1
                item = ("any",)
            elif c == "(":
                self.pos += 1
                item = self._alt(True)
                self._ws(True)
                if t[self.pos] != ")":
                    raise ValueError("expected ) at %d" % self.pos)
                self.pos += 1
            else:
                item = ("ref", self._name())
            # postfix
            while self.pos < len(t) and t[self.pos] in "*+?{":
                q = t[self.pos]
                if q == "{":
                    end = t.index("}", self.pos)
                    body = t[self.pos + 1:end]
                    self.pos = end + 1
                    if "," in body:
                        a, b = body.split(",")
                        lo, hi = int(a), (int(b) if b.strip() else None)
                    else:
                        lo = hi = int(body)
                else:
                    self.pos += 1
                    lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[q]
                item = ("rep", item, lo, hi)
            items.append(item)
        return items[0] if len(items) == 1 else ("seq", items)

    # --- matching --------------------------------------------------------
    def _m(self, node, p):
        k = node[0]
        s = self.s
        if k == "lit":
            return {p + len(node[1])} if s.startswith(node[1], p) else set()
        if k == "cls":
            if p >= len(s):
                return set()
            o = ord(s[p])
            inside = any(lo <= o <= hi for lo, hi in node[2])
            return {p + 1} if inside != node[1] else set()
        if k == "any":
            return {p + 1} if p < len(s) else set()
        if k == "ref":
            key = (node[1], p)
            if key not in self.memo:
                self.memo[key] = set()  # no left recursion in the grammars under test
                self.memo[key] = self._m(self.rules[node[1]], p)
            return self.memo[key]
        if k == "seq":
            cur = {p}
            for x in node[1]:
                nxt = set()
                for q in cur:
                    nxt |= self._m(x, q)
                cur = nxt
                if not cur:
                    break
            return cur
        if k == "alt":
            out = set()
            for x in node[1]:
                out |= self._m(x, p)
            return out
        if k == "rep":
            _, x, lo, hi = node
            out = {p} if lo == 0 else set()
            cur, seen, i = {p}, {p}, 0
            while cur and (hi is None or i < hi):
                nxt = set()
                for q in cur:
                    nxt |= self._m(x, q)
                i += 1
                if hi is None and i >= lo:
                    nxt -= seen
                    seen |= nxt
                if i >= lo:
                    out |= nxt
                cur = nxt
            return out
        raise ValueError(k)

    def complete(self, s):
        self.s = s
        self.memo = {}
        return len(s) in self._m(("ref", "root"), 0)
