"""The one message catalogue of the widgets: English and Simplified Chinese.

Every string the studio shows comes from here; the browser receives the catalogue of its
language in the snapshot, so the front end holds no text of its own. Placeholders use
``str.format`` names (``{n}``) and the browser fills them the same way.

The English names of controls are also their accessible names, which tests and screen
readers look up (``Run all``, ``Retry failed``, ...): change them only on purpose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = ["LANGS", "catalogue", "resolve_lang", "tr"]

log = logging.getLogger("nbbatch")

_EN: dict[str, str] = {
    # run toolbar
    "run_all": "Run all",
    "pause": "Pause",
    "resume": "Resume",
    "stop": "Stop",
    "retry_failed": "Retry failed",
    "delete_selected": "Delete selected",
    "retry_selected": "Retry selected",
    "run_next_selected": "Run selected next",
    "clear_selection": "Clear selection",
    "provider": "Provider",
    "concurrency": "Concurrency",
    "toolbar": "Run controls",
    # run states
    "state_idle": "Ready",
    "state_running": "Running",
    "state_paused": "Paused: tasks in flight finish, nothing new starts",
    "state_stopping": "Stopping…",
    "state_finished": "Finished",
    "state_stopped": "Stopped",
    # progress
    "progress": "Batch progress",
    "n_done": "{n} done",
    "n_failed": "{n} failed",
    "n_total": "{n} total",
    "elapsed": "elapsed {t}",
    "eta": "ETA {t}",
    "ipm": "{n} images/min",
    "n_selected": "{n} selected",
    # grid
    "grid": "Tasks",
    "filters": "Filter by status",
    "filter_all": "All",
    "search": "Search prompts",
    "select_all": "Select all",
    "select_task": "Select task {n}",
    "col_num": "#",
    "col_refs": "Refs",
    "col_prompt": "Prompt",
    "col_status": "Status",
    "col_results": "Results",
    "col_actions": "Actions",
    "empty": 'No tasks yet. Add some from Python: batch.add(["a red fox in snow"])',
    "no_match": "No task matches this filter.",
    "loading": "Loading…",
    "drag": "Drag to reorder (or Alt+↑ / Alt+↓)",
    "prompt_of": "Prompt of task {n}",
    "edit_hint": "Enter saves · Shift+Enter new line · Esc cancels",
    "attempt": "attempt {n}",
    "show_error": "Show full error",
    "hide_error": "Hide",
    "more_images": "+{n}",
    "default_size": "default size",
    "seed": "seed {n}",
    "random_seed": "random seed",
    "images_per_task": "×{n}",
    "reference": "reference image",
    "result": "result image",
    # per-row actions
    "edit": "Edit",
    "save": "Save",
    "cancel_edit": "Cancel edit",
    "delete": "Delete",
    "retry": "Retry",
    "run_next": "Run next",
    "duplicate": "Duplicate",
    "cancel_task": "Cancel task",
    # status badges (exact texts: tests and users read them)
    "st_idle": "waiting",
    "st_queued": "queued",
    "st_running": "generating {pct}%",
    "st_succeeded": "done",
    "st_failed": "failed",
    "st_cancelled": "cancelled",
    "st_interrupted": "interrupted",
    # notices
    "dismiss": "Dismiss",
    "nothing_to_run": "Nothing to run: every task has finished. Add tasks or retry failed ones.",
    "nothing_failed": "No failed task to retry.",
    "nothing_selected": "Select tasks first (click a row, Shift/Ctrl+click for more).",
    "already_running": "The batch is already running; new and retried tasks join this run.",
    "task_gone": "That task no longer exists (it was deleted). The list is refreshed.",
    "unknown_request": (
        "The page sent a request this kernel does not understand ({type}). "
        "Reload the page; if it stays, reinstall nbbatch so the kernel and the page match."
    ),
    "bad_request": "The page sent an incomplete request ({type}). Reload the page.",
    "internal": (
        "Something went wrong while {action} ({kind}). "
        "Details are in the kernel log (logger 'nbbatch')."
    ),
    "run_error": "The run ended with an error: {message}",
    "needs_loop": (
        "Runs need the notebook's event loop; start the studio from a notebook cell, "
        "or call `await batch.run(...)` in a script."
    ),
    "timeout": (
        "The kernel did not answer in time. Is a cell still running? Try again when it ends."
    ),
    "thumb_failed": "Some thumbnails could not be made; the images are still on disk.",
    # actions, as they appear inside "while {action}"
    "doing_run_all": "starting the run",
    "doing_pause": "pausing",
    "doing_resume": "resuming",
    "doing_stop": "stopping",
    "doing_retry": "retrying",
    "doing_edit": "saving the prompt",
    "doing_delete": "deleting",
    "doing_move": "moving the task",
    "doing_duplicate": "duplicating",
    "doing_run_next": "moving the task to the front",
    "doing_rows": "loading the rows",
    "doing_thumbs": "loading thumbnails",
    "doing_select": "changing the selection",
    "doing_provider": "switching the provider",
    "doing_concurrency": "changing the concurrency",
    "doing_cancel": "cancelling the task",
    "doing_request": "handling a request",
}

_ZH: dict[str, str] = {
    "run_all": "全部运行",
    "pause": "暂停",
    "resume": "继续",
    "stop": "停止",
    "retry_failed": "重试失败项",
    "delete_selected": "删除所选",
    "retry_selected": "重试所选",
    "run_next_selected": "所选优先运行",
    "clear_selection": "取消选择",
    "provider": "图像服务",
    "concurrency": "并发数",
    "toolbar": "运行控制",
    "state_idle": "就绪",
    "state_running": "运行中",
    "state_paused": "已暂停：进行中的任务会完成，不再启动新任务",
    "state_stopping": "正在停止…",
    "state_finished": "已完成",
    "state_stopped": "已停止",
    "progress": "批次进度",
    "n_done": "已完成 {n}",
    "n_failed": "失败 {n}",
    "n_total": "共 {n}",
    "elapsed": "已用时 {t}",
    "eta": "预计剩余 {t}",
    "ipm": "每分钟 {n} 张",
    "n_selected": "已选 {n} 项",
    "grid": "任务",
    "filters": "按状态筛选",
    "filter_all": "全部",
    "search": "搜索提示词",
    "select_all": "全选",
    "select_task": "选择任务 {n}",
    "col_num": "#",
    "col_refs": "参考图",
    "col_prompt": "提示词",
    "col_status": "状态",
    "col_results": "结果",
    "col_actions": "操作",
    "empty": '还没有任务。请在 Python 中添加：batch.add(["雪中的红狐狸"])',
    "no_match": "没有符合筛选条件的任务。",
    "loading": "加载中…",
    "drag": "拖动以调整顺序（或 Alt+↑ / Alt+↓）",
    "prompt_of": "任务 {n} 的提示词",
    "edit_hint": "Enter 保存 · Shift+Enter 换行 · Esc 取消",
    "attempt": "第 {n} 次尝试",
    "show_error": "查看完整错误",
    "hide_error": "收起",
    "more_images": "+{n}",
    "default_size": "默认尺寸",
    "seed": "种子 {n}",
    "random_seed": "随机种子",
    "images_per_task": "×{n}",
    "reference": "参考图",
    "result": "生成结果",
    "edit": "编辑",
    "save": "保存",
    "cancel_edit": "取消编辑",
    "delete": "删除",
    "retry": "重试",
    "run_next": "优先运行",
    "duplicate": "复制",
    "cancel_task": "取消任务",
    "st_idle": "等待中",
    "st_queued": "排队中",
    "st_running": "生成中 {pct}%",
    "st_succeeded": "已完成",
    "st_failed": "失败",
    "st_cancelled": "已取消",
    "st_interrupted": "已中断",
    "dismiss": "关闭",
    "nothing_to_run": "没有可运行的任务：所有任务都已结束。请添加任务或重试失败项。",
    "nothing_failed": "没有失败的任务需要重试。",
    "nothing_selected": "请先选择任务（单击一行，Shift/Ctrl+单击可多选）。",
    "already_running": "批次正在运行；新增和重试的任务会加入本次运行。",
    "task_gone": "该任务已不存在（已被删除），列表已刷新。",
    "unknown_request": (
        "页面发送了内核无法识别的请求（{type}）。请刷新页面；如仍出现，请重新安装 nbbatch。"
    ),
    "bad_request": "页面发送的请求不完整（{type}）。请刷新页面。",
    "internal": "{action}时出错（{kind}）。详细信息见内核日志（logger 'nbbatch'）。",
    "run_error": "运行因错误结束：{message}",
    "needs_loop": (
        "运行需要笔记本的事件循环；请在笔记本单元格中启动工作台，"
        "或在脚本中使用 `await batch.run(...)`。"
    ),
    "timeout": "内核未及时响应。是否有单元格仍在运行？请在其结束后重试。",
    "thumb_failed": "部分缩略图无法生成；图片仍保存在磁盘上。",
    "doing_run_all": "启动运行",
    "doing_pause": "暂停",
    "doing_resume": "继续运行",
    "doing_stop": "停止",
    "doing_retry": "重试",
    "doing_edit": "保存提示词",
    "doing_delete": "删除",
    "doing_move": "移动任务",
    "doing_duplicate": "复制任务",
    "doing_run_next": "调整任务优先级",
    "doing_rows": "加载任务行",
    "doing_thumbs": "加载缩略图",
    "doing_select": "更改选择",
    "doing_provider": "切换图像服务",
    "doing_concurrency": "修改并发数",
    "doing_cancel": "取消任务",
    "doing_request": "处理请求",
}

# -- inputs: Upload, PromptPanel, SettingsPanel (kept apart from the grid's messages) ------
_EN.update(
    {
        "upload": "Reference images",
        "drop_here": "Drop images or a folder here",
        "drop_hint": "{formats} · up to {n} files · {size} each",
        "add_images": "Add images",
        "add_folder": "Add folder",
        "clear": "Clear",
        "remove": "Remove",
        "remove_named": "Remove {name}",
        "image_n": "Image {n} of {total}: {name}",
        "move_hint": "Drag to reorder, or Alt+← / Alt+→",
        "n_images": "{n} images",
        "uploading": "Uploading {name}: {pct}%",
        "checking": "Checking {name}…",
        "refused_title": "Not added ({n})",
        "too_big": "too big: {size}; the limit is {limit}",
        "empty_file": "the file is empty (0 bytes)",
        "wrong_type": "not an accepted image: it is {kind}; accepted: {formats}",
        "unknown_data": "unknown data",
        "too_many_files": "left out: the limit is {n} files",
        "duplicate_image": "the same image is already added (as {other})",
        "upload_broken": "the transfer of {name} broke off; add it again",
        "upload_gone": (
            "That upload is no longer expected (the list was cleared?). Add the file again."
        ),
        "busy_upload": "Too many files at once; the page retries.",
        "image_gone": "That image is no longer in the list.",
        "doing_upload": "receiving a file",
        "doing_remove": "removing images",
        "doing_move_image": "moving the image",
    }
)
_ZH.update(
    {
        "upload": "参考图",
        "drop_here": "将图片或文件夹拖放到这里",
        "drop_hint": "{formats} · 最多 {n} 个文件 · 每个不超过 {size}",
        "add_images": "添加图片",
        "add_folder": "添加文件夹",
        "clear": "清空",
        "remove": "移除",
        "remove_named": "移除 {name}",
        "image_n": "第 {n} 张，共 {total} 张：{name}",
        "move_hint": "拖动调整顺序，或 Alt+← / Alt+→",
        "n_images": "{n} 张图片",
        "uploading": "正在上传 {name}：{pct}%",
        "checking": "正在检查 {name}…",
        "refused_title": "未添加（{n} 个）",
        "too_big": "文件过大：{size}；上限为 {limit}",
        "empty_file": "文件为空（0 字节）",
        "wrong_type": "不是可接受的图片：实际为 {kind}；可接受：{formats}",
        "unknown_data": "未知数据",
        "too_many_files": "未添加：最多 {n} 个文件",
        "duplicate_image": "相同的图片已添加（名为 {other}）",
        "upload_broken": "{name} 传输中断，请重新添加",
        "upload_gone": "该上传已失效（列表可能已清空）。请重新添加文件。",
        "busy_upload": "同时上传的文件过多；页面会自动重试。",
        "image_gone": "该图片已不在列表中。",
        "doing_upload": "接收文件",
        "doing_remove": "移除图片",
        "doing_move_image": "移动图片",
    }
)

LANGS: Mapping[str, Mapping[str, str]] = {"en": _EN, "zh": _ZH}

_ALIASES = {"zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh", "zh-sg": "zh", "cn": "zh", "en-us": "en"}


def resolve_lang(lang: str | None = None) -> str:
    """``lang``, else ``$NBBATCH_LANG``, else English; unknown languages fall back to English."""
    raw = lang if lang is not None else os.environ.get("NBBATCH_LANG", "")
    key = raw.strip().lower().replace(" ", "")
    key = _ALIASES.get(key, key.split(".")[0])  # "zh_CN.UTF-8" -> "zh_cn" -> "zh"
    key = _ALIASES.get(key, key)
    if key in LANGS:
        return key
    if key:
        log.warning("nbbatch widgets: no messages for language %r; using English", raw)
    return "en"


def catalogue(lang: str) -> dict[str, str]:
    """Every message of ``lang`` (English where a translation is missing)."""
    return {**_EN, **LANGS.get(lang, {})}


def tr(lang: str, key: str, **values: object) -> str:
    """The message ``key`` in ``lang`` with its placeholders filled."""
    text = LANGS.get(lang, _EN).get(key) or _EN.get(key, key)
    return text.format(**values) if values else text
