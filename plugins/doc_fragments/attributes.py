# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attribute values every ceptra.backfill module shares (the descriptions come from
``ansible.builtin.action_common_attributes``)."""

from __future__ import annotations


class ModuleDocFragment:
    """``ceptra.backfill.attributes``: member of the C(cp) action group, POSIX controllers;
    ``ceptra.backfill.attributes.info_module``: read-only modules (check mode runs as is, no diff)."""

    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    support: full
    membership:
      - ceptra.backfill.cp
  platform:
    platforms: posix
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
"""
