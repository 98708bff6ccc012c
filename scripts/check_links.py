#!/usr/bin/env python3
"""Checks the relative links of README.md, docs/*.md and examples/*/README.md, offline: every
linked file exists and every #anchor names a heading of its target (GitHub's slugs). External
links (http:, https:, mailto:) are not fetched. Exits 1 and lists the broken links when there are any.

Usage: scripts/check_links.py [FILE.md ...]
(default: the root *.md, docs/*.md and examples/*/README.md)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)|!\[[^\]]*\]\(([^)\s]+)\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
FENCE = re.compile(r'^\s*(```|~~~)')


def strip_code(text):
    """The text outside fenced code blocks and inline code spans, line by line."""
    out, fenced = [], False
    for line in text.split('\n'):
        if FENCE.match(line):
            fenced = not fenced
            out.append('')
            continue
        if fenced or line.startswith('    '):
            out.append('')
            continue
        out.append(re.sub(r'`[^`]*`', '``', line))
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path, cache={}):
    if path not in cache:
        found, seen = set(), {}
        fenced = False
        for line in open(path, encoding='utf-8').read().split('\n'):
            if FENCE.match(line):
                fenced = not fenced
                continue
            match = None if fenced else HEADING.match(line)
            if match:
                base = slug(match.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f'{base}-{n}')
        cache[path] = found
    return cache[path]


def check(path):
    broken = []
    text = open(path, encoding='utf-8').read()
    for number, line in enumerate(strip_code(text), 1):
        for match in LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if re.match(r'^[a-z]+:', target):
                continue
            file_part, _, anchor = target.partition('#')
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(resolved):
                broken.append(f'{os.path.relpath(path, ROOT)}:{number}: {target}: no such file')
                continue
            if anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
                broken.append(f'{os.path.relpath(path, ROOT)}:{number}: {target}: no heading #{anchor}')
    return broken


def main():
    files = sys.argv[1:]
    if not files:
        files = [os.path.join(ROOT, f) for f in sorted(os.listdir(ROOT)) if f.endswith('.md')]
        docs = os.path.join(ROOT, 'docs')
        files += [os.path.join(docs, f) for f in sorted(os.listdir(docs)) if f.endswith('.md')]
        examples = os.path.join(ROOT, 'examples')
        files += [
            os.path.join(examples, d, 'README.md')
            for d in sorted(os.listdir(examples))
            if os.path.isfile(os.path.join(examples, d, 'README.md'))
        ]
    broken = [b for f in files for b in check(f)]
    for b in broken:
        print(b)
    print(f'{len(files)} files, {len(broken)} broken links')
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
