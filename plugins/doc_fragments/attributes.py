# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every ceptra.backfill module's documentation shares: the authors and the attributes
(descriptions as in ``ansible.builtin.action_common_attributes``, with the values of this
collection). A module names ``ceptra.backfill.connection`` and ``ceptra.backfill.attributes``
(plus ``ceptra.backfill.attributes.info_module`` when it only reads) and documents its own
``check_mode`` and ``diff_mode`` support."""

from __future__ import annotations


class ModuleDocFragment:
    """``ceptra.backfill.attributes``: member of the C(cp) action group, POSIX controllers;
    ``ceptra.backfill.attributes.info_module``: read-only modules (check mode runs as is, no diff)."""

    DOCUMENTATION = r"""
author:
  - ceptra.backfill contributors (@ceptra)
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target, if not
      supported the action will be skipped.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: full
    membership:
      - ceptra.backfill.cp
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
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
