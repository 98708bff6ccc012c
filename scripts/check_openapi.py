#!/usr/bin/env python3
"""Checks docs/openapi.yaml: it parses as YAML, is an OpenAPI 3 document, every `$ref` resolves,
and every route the server registers under /api (crates/switchboard/src/http/*.rs, the
`.route("/api/...", get(...)/post(...))` lines) appears in it with the same method; the status
routes (/stats, /health, /ready, /metrics) too. Offline; needs PyYAML (python3-yaml).
"""
import glob
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTE = re.compile(r'\.route\(\s*"(/[^"]*)",\s*((?:get|post|put|delete|patch)\([^)]*\)(?:\s*\.\s*(?:get|post|put|delete|patch)\([^)]*\))*)')
METHOD = re.compile(r'(get|post|put|delete|patch)\(')
STATUS_ROUTES = {'/stats', '/health', '/ready', '/metrics'}


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == '$ref':
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document, ref):
    if not ref.startswith('#/'):
        return False
    node = document
    for part in ref[2:].split('/'):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def main():
    path = os.path.join(ROOT, 'docs', 'openapi.yaml')
    document = yaml.safe_load(open(path, encoding='utf-8'))
    problems = []
    if not str(document.get('openapi', '')).startswith('3.'):
        problems.append('openapi: not an OpenAPI 3 document')
    paths = document.get('paths') or {}
    for ref in refs(document):
        if not resolve(document, ref):
            problems.append(f'unresolved $ref {ref}')
    routes = []
    for source in sorted(glob.glob(os.path.join(ROOT, 'crates/switchboard/src/http/*.rs'))):
        text = open(source, encoding='utf-8').read()
        for match in ROUTE.finditer(text):
            route = match.group(1)
            if route.startswith('/api') or route in STATUS_ROUTES:
                for method in METHOD.findall(match.group(2)):
                    routes.append((route, method, os.path.relpath(source, ROOT)))
    if not any(r.startswith('/api') for r, _, _ in routes):
        problems.append('found no /api routes in crates/switchboard/src/http: has the router moved?')
    for route, method, source in routes:
        if route not in paths:
            problems.append(f'{source}: {method.upper()} {route} is not in docs/openapi.yaml')
        elif method not in paths[route]:
            problems.append(f'{source}: {method.upper()} {route}: the path is documented, the method is not')
    documented = {(p, m) for p, ops in paths.items() for m in ops if m in ('get', 'post', 'put', 'delete', 'patch')}
    served = {(r, m) for r, m, _ in routes}
    for p, m in sorted(documented - served):
        problems.append(f'docs/openapi.yaml: {m.upper()} {p} is documented but the server has no such route')
    for problem in problems:
        print(problem)
    print(f'{len(routes)} routes, {len(paths)} documented paths, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
