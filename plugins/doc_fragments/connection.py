# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every ceptra.backfill module shares."""

from __future__ import annotations


class ModuleDocFragment:
    """Documentation of the shared connection options (``ceptra.backfill.connection``)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the CEPtra control plane, for example V(https://ceptra.example:8443).
      - A path after the host (a gateway prefix) is kept in front of every route.
      - A malformed URL (an unclosed IPv6 bracket, a port outside 1-65535) fails the task with a
        message saying what to fix. Credentials in the URL (C(user:password@)) are never shown.
      - If not set, the value of the E(CEPTRA_URL) environment variable is used.
    type: str
    required: true
  token:
    description:
      - 'Bearer token sent as C(Authorization: Bearer <token>) (gateways and lab demos).'
      - Never logged or returned.
      - If not set, the value of the E(CEPTRA_TOKEN) environment variable is used.
    type: str
  client_cert:
    description:
      - PEM client certificate for mutual TLS. Its SPIFFE URI SAN is the caller's identity.
      - Requires O(client_key).
      - If not set, the value of the E(CEPTRA_CLIENT_CERT) environment variable is used.
    type: path
  client_key:
    description:
      - PEM private key (unencrypted) of O(client_cert). Only its path is handled by the
        collection; its contents are never printed.
      - If not set, the value of the E(CEPTRA_CLIENT_KEY) environment variable is used.
    type: path
  ca_path:
    description:
      - CA bundle file (or directory of hashed certificates) that signed the server certificate,
        in addition to the system trust store.
      - If not set, the value of the E(CEPTRA_CA_PATH) environment variable is used.
    type: path
  validate_certs:
    description:
      - Verify the server certificate and host name. Only switch this off for a throwaway lab.
      - If not set, the value of the E(CEPTRA_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for a connection and for each response.
      - If not set, the value of the E(CEPTRA_TIMEOUT) environment variable is used.
    type: int
    default: 30
  retries:
    description:
      - How many times a call is retried on connection errors and on HTTP 429, 502, 503 and 504,
        with jittered exponential backoff (a C(Retry-After) header is honoured).
        Other 4xx answers are never retried.
      - If not set, the value of the E(CEPTRA_RETRIES) environment variable is used.
    type: int
    default: 5
  routes:
    description:
      - 'Replace the path template of named routes, for deployments that serve the contract
        elsewhere, for example C({"readyz": "/admin/readyz"}).'
      - Route names are V(healthz), V(readyz), V(metrics), V(config), V(config_rollback),
        V(definitions), V(definitions_validate), V(activate), V(activation), V(replay_jobs),
        V(replay_job), V(state), V(audit), V(append), V(append_stream),
        V(test_metrics_snapshot), V(test_faults), V(test_outage), V(test_wipe),
        V(test_compact), V(test_checkpoint). A template keeps the placeholders of the route
        it replaces (C({barrier_id}), C({job_id}), C({part_id})).
      - If not set, the value of the E(CEPTRA_ROUTES) environment variable (a JSON object) is used.
    type: dict
notes:
  - Calls that change state carry an C(Idempotency-Key) header, reused across the retries of
    one call, so a retried write is applied once.
"""
