// Every label of the console in Chinese (the default) and English, and dates in China
// Standard Time. A label is rendered by t(key); elements built with label() carry
// data-t="key", so that a language switch re-renders them all (the tests check that).
const D = {
  app: ['抽查监管平台', 'Spotcheck'],
  lang_switch: ['English', '中文'],
  login: ['登录', 'Log in'], logout: ['退出', 'Log out'],
  user_name: ['用户名', 'user name'], password: ['密码', 'password'],
  login_failed: ['登录失败', 'Login failed'], session_ended: ['会话已结束，请重新登录', 'Session ended: log in again'],
  own_password_title: ['请设置您自己的密码', 'Choose your own password'],
  own_password_why: ['当前密码由管理员设置，仅能用于设置您自己的密码。设置后即可开始工作。', 'Your password was set by the administrator and can only be used to choose your own. Once you have, you can start working.'],
  new_password: ['新密码', 'new password'], repeat_password: ['再次输入新密码', 'repeat the new password'],
  save_password: ['保存密码', 'Save password'], passwords_differ: ['两次输入的密码不一致', 'The two passwords differ'],
  nav_queue: ['任务队列', 'Task queue'], nav_mine: ['我的任务', 'My tasks'], nav_entities: ['监管对象', 'Entities'],
  nav_results: ['公示结果', 'Published results'], nav_draws: ['随机抽取', 'Draws'], nav_admin: ['管理', 'Administration'],
  kind: ['类型', 'Kind'], status: ['状态', 'Status'], severity: ['严重程度', 'Severity'], department: ['部门', 'Department'],
  item: ['检查事项', 'Item'], entity: ['监管对象', 'Entity'], date_from: ['起始日期', 'From'], date_to: ['截止日期', 'To'],
  sort: ['排序', 'Sort'], all: ['全部', 'all'], apply: ['筛选', 'Filter'], reset: ['重置', 'Reset'],
  sort_newest: ['最新', 'newest'], sort_oldest: ['最早', 'oldest'], sort_severity: ['严重程度', 'severity'],
  sort_updated: ['最近变更', 'recently changed'], sort_entity: ['监管对象', 'entity'], sort_status: ['状态', 'status'],
  open_critical: ['待处理严重', 'open critical'], open_high: ['待处理高', 'open high'], open_all: ['待处理', 'open'],
  acknowledged_n: ['已确认未办结', 'acknowledged'],
  id: ['编号', 'No.'], rule: ['规则', 'Rule'], opened: ['发生时间', 'Opened'], detail: ['说明', 'Detail'],
  total: ['共', 'total'], page: ['页', 'page'], prev: ['上一页', 'Previous'], next: ['下一页', 'Next'],
  select_all: ['全选本页', 'Select page'], bulk_ack: ['批量确认', 'Acknowledge selected'],
  new_changes: ['有新的变更，点击刷新', 'New changes: click to refresh'], no_tasks: ['没有符合条件的任务', 'No matching tasks'],
  loading: ['加载中…', 'Loading…'], live_on: ['实时更新', 'Live'], live_off: ['未连接', 'Offline'],
  back: ['返回', 'Back'], task: ['任务', 'Task'], limit: ['限值', 'Limit'], source: ['依据', 'Source'],
  window: ['检查期间', 'Window'], cleared: ['已恢复', 'Cleared'], updated: ['更新时间', 'Updated'],
  inspectors: ['检查人员', 'Inspectors'], result: ['结果', 'Result'], comment: ['意见', 'Comment'],
  evidence: ['证据', 'Evidence'], chart: ['曲线', 'Chart'], range: ['时间范围', 'Time range'],
  range_task: ['异常前后', 'Around the breach'], range_1h: ['近1小时', 'Last hour'], range_6h: ['近6小时', 'Last 6 hours'],
  range_24h: ['近24小时', 'Last 24 hours'], range_7d: ['近7天', 'Last 7 days'],
  limit_line: ['限值线', 'limit'], violation: ['违规区间', 'violation'], no_data: ['该时段无数据', 'No data in this range'],
  records: ['违规记录', 'Records that breached'], records_in_range: ['时段内记录数', 'Records in range'],
  time: ['时间', 'Time'], record_kind: ['记录类型', 'Record kind'], record_id: ['记录编号', 'Record id'],
  record: ['记录内容', 'Record'], breaches: ['违反规则', 'Rules broken'], none: ['无', 'none'],
  notes: ['处理记录', 'Notes'], history: ['历史', 'History'], checks: ['远程核查', 'Remote checks'],
  outcome: ['核查结论', 'Outcome'], completeness: ['数据完整度', 'Completeness'], compliance: ['合规比例', 'Compliance'],
  decision: ['决定', 'Decision'], decided_by: ['决定人', 'Decided by'], checked_at: ['核查时间', 'Checked'],
  actions: ['操作', 'Actions'], acknowledge: ['确认', 'Acknowledge'], resolve: ['办结', 'Resolve'],
  publish: ['公示', 'Publish'], assign: ['指派检查人员', 'Assign inspectors'], assign_hint: ['检查人员编号，逗号分隔', 'Inspector ids, comma-separated'],
  category: ['结果类别', 'Result category'], choose: ['请选择', 'Choose…'],
  comment_required: ['请填写意见', 'Write a comment'], category_required: ['请选择结果类别', 'Choose a result category'],
  confirm_publish: ['确认公示', 'Confirm publication'],
  confirm_publish_text: ['公示后结果将向社会公开，且不可撤回。确定公示吗？', 'Once published the result is public and cannot be withdrawn. Publish it?'],
  confirm: ['确定', 'Confirm'], cancel: ['取消', 'Cancel'], done: ['已完成', 'Done'],
  run_check: ['执行远程核查', 'Run a remote check'], record_decision: ['记录决定', 'Record the decision'],
  accept: ['采纳核查结论', 'Accept the verdict'], override: ['改判', 'Override'], reason: ['理由', 'Reason'],
  readonly_role: ['当前角色只读', 'Your role reads only'],
  feeds: ['数据源', 'Feeds'], agent: ['采集端', 'Agent'], last_seen: ['最后上报', 'Last seen'],
  metrics: ['监测指标', 'Metrics'], metric: ['指标', 'Metric'], value: ['数值', 'Value'], events: ['事件记录', 'Event records'],
  only_breaches: ['仅显示违规', 'Breaches only'], tasks: ['任务', 'Tasks'], results: ['检查结果', 'Results'],
  district: ['区域', 'District'], address: ['地址', 'Address'], risk: ['信用风险分类', 'Risk class'], domain: ['领域', 'Domain'],
  search: ['搜索', 'Search'], search_hint: ['企业名称或统一社会信用代码', 'Company name or credit code'],
  download_csv: ['下载CSV', 'Download CSV'], published: ['公示日期', 'Published'], company: ['企业名称', 'Company'],
  credit_code: ['统一社会信用代码', 'Credit code'], no_results: ['没有找到结果', 'No results'],
  draws: ['随机抽取记录', 'Draws'], commitment: ['承诺值', 'Commitment'], committed: ['承诺时间', 'Committed'],
  revealed: ['揭示时间', 'Revealed'], drawn: ['抽中', 'Drawn'], disclosed_after: ['公开日期', 'Public after'],
  draw_record: ['抽取记录', 'Draw record'], not_disclosed: ['检查期间结束后公开', 'Public after the inspection window'],
  verify_title: ['自行验证本次抽取', 'Verify this draw yourself'],
  verify_1: ['第一步：核对承诺。抽取前公布的承诺值应等于种子的SHA-256：', 'Step 1: check the commitment. The commitment published before the draw must equal SHA-256 of the seed:'],
  verify_ok: ['一致', 'matches'], verify_bad: ['不一致', 'does not match'],
  verify_2: ['第二步：下载抽取记录（JSON）：', 'Step 2: download the draw record (JSON):'],
  verify_3: ['第三步：用公开的算法重新计算抽取结果，并与抽取前公布的承诺比对：', 'Step 3: recompute the draw with the published algorithm and compare it with the commitments published before the draw:'],
  verify_4: ['或使用不依赖本系统的参考实现（Python）：', 'Or use the reference implementation (Python), independent of this system:'],
  verify_5: ['算法说明见 docs/draw-algorithm.md：分层随机抽取对象，再按无回避冲突、负载均衡的规则抽取检查人员。', 'The algorithm is in docs/draw-algorithm.md: entities drawn per risk stratum, then inspectors without conflicts and with even load.'],
  my_tasks_hint: ['仅显示指派给您的任务', 'Only tasks assigned to you'],
  rule_packs: ['规则包', 'Rule packs'], plans: ['年度计划', 'Annual plans'], registry: ['名录库', 'Registry'],
  joint: ['联合检查', 'Joint inspections'], audit: ['审计日志', 'Audit log'], ingest: ['数据接入', 'Ingest'],
  reports: ['工作报表', 'Reports'], print: ['打印', 'Print'],
  r_planned: ['计划', 'planned'], r_drawn: ['已抽取', 'drawn'], r_checked: ['已检查', 'checked'], r_published: ['已公示', 'published'],
  version: ['版本', 'Version'], rules_n: ['规则数', 'Rules'], origin: ['来源', 'Origin'], progress: ['进度', 'Progress'],
  items: ['检查事项清单', 'Item list'], entities_lib: ['检查对象名录库', 'Entity library'], inspectors_lib: ['执法检查人员名录库', 'Inspector library'],
  audit_head: ['最新条目', 'Head'], entries: ['条目', 'Entries'], name: ['名称', 'Name'], count: ['数量', 'Count'],
  forbidden: ['无权访问', 'Not allowed'], error: ['出错', 'Error'],
  // codes from the API
  'kind.random': ['随机抽查', 'random'], 'kind.joint': ['联合检查', 'joint'], 'kind.anomaly': ['异常', 'anomaly'], 'kind.referral': ['转办', 'referral'],
  'status.drawn': ['已抽取', 'drawn'], 'status.open': ['待处理', 'open'], 'status.acknowledged': ['已确认', 'acknowledged'],
  'status.checked': ['已核查', 'checked'], 'status.resolved': ['已办结', 'resolved'], 'status.published': ['已公示', 'published'],
  'severity.low': ['低', 'low'], 'severity.medium': ['中', 'medium'], 'severity.high': ['高', 'high'], 'severity.critical': ['严重', 'critical'],
  'role.admin': ['管理员', 'admin'], 'role.supervisor': ['监管人员', 'supervisor'], 'role.inspector': ['检查人员', 'inspector'], 'role.auditor': ['审计人员', 'auditor'],
  'outcome.compliant': ['合规', 'compliant'], 'outcome.violations': ['发现违规', 'violations'], 'outcome.cannot_verify': ['无法远程核实，需现场检查', 'cannot be verified remotely'],
  'domain.pool': ['游泳场所', 'swimming pools'], 'domain.game': ['网络游戏', 'online games'], 'domain.hospital': ['互联网医院', 'internet hospitals'],
  'dept.health': ['卫生健康局', 'health bureau'], 'dept.culture': ['文化广电旅游体育局', 'culture bureau'], 'dept.market': ['市场监督管理局', 'market regulation'],
  'decision.accepted': ['采纳', 'accepted'], 'decision.overridden': ['改判', 'overridden'],
  'cat.no_problem': ['未发现问题', 'No problem found'], 'cat.corrected': ['发现问题已责令改正', 'Problem found, correction ordered'],
  'cat.pending_follow_up': ['发现问题待后续处理', 'Problem found, follow-up pending'],
  'cat.false_disclosure': ['公示信息隐瞒真实情况、弄虚作假', 'Public information concealed or falsified'],
  'cat.refused_inspection': ['不予配合检查情节严重', 'Seriously refused to cooperate with the inspection'],
  'cat.not_disclosed': ['未按规定公示应当公示的信息', 'Required information not disclosed'],
  'cat.unreachable': ['通过登记的住所(经营场所)无法联系', 'Unreachable at the registered address'],
  'cat.operating_normally': ['正常经营', 'Operating normally'],
  // column names of the read views
  'col.id': ['编号', 'id'],
  'col.name': ['名称', 'name'], 'col.title': ['标题', 'title'],
  'col.domain': ['领域', 'domain'],
  'col.hash': ['哈希', 'hash'],
  'col.origin': ['来源', 'origin'],
  'col.rules': ['规则数', 'rules'],
  'col.year': ['年度', 'year'],
  'col.department': ['部门', 'department'],
  'col.item': ['检查事项', 'item'],
  'col.ratios': ['抽查比例', 'ratios'],
  'col.batches': ['批次', 'batches'],
  'col.planned': ['计划数', 'planned'],
  'col.drawn': ['已抽取', 'drawn'],
  'col.checked': ['已核查', 'checked'],
  'col.published': ['已公示', 'published'],
  'col.batches_drawn': ['已抽批次', 'batches drawn'],
  'col.draw': ['抽取', 'draw'],
  'col.commitment': ['承诺值', 'commitment'],
  'col.replacements': ['递补', 'replacements'],
  'col.code': ['代码', 'code'],
  'col.district': ['区域', 'district'],
  'col.risk': ['风险分类', 'risk'],
  'col.agents': ['采集端', 'agents'],
  'col.fields': ['领域', 'fields'],
  'col.active': ['在职', 'active'],
  'col.seq': ['序号', 'seq'],
  'col.ts_ms': ['时间', 'time'],
  'col.kind': ['类型', 'kind'],
  'col.subject': ['对象', 'subject'],
  'col.body': ['内容', 'body'],
  'col.received_ms': ['接收时间', 'received'],
  'col.topic': ['主题', 'topic'],
  'col.reason': ['原因', 'reason'],
  'col.entity': ['监管对象', 'entity'],
  'col.state': ['状态', 'state'],
  'col.legal_basis': ['法律依据', 'legal basis'],
  'col.method': ['检查方式', 'method'],
  'col.rule_pack': ['规则包', 'rule pack'],
  'col.address': ['地址', 'address'],
  'col.contact': ['联系方式', 'contact'],
  'col.plan': ['计划', 'plan'],
  'col.joint_share': ['联合检查占比', 'joint share'], 'col.joint_required': ['应联合检查数', 'joint required'],
  'col.overdue_publications': ['逾期未公示', 'overdue publications'], 'col.anomalies_opened': ['异常任务', 'anomaly tasks'],
  'col.ack_median_min': ['确认用时中位数(分)', 'ack median (min)'], 'col.ack_p90_min': ['确认用时P90(分)', 'ack p90 (min)'],
  'col.resolve_median_min': ['办结用时中位数(分)', 'resolve median (min)'], 'col.resolve_p90_min': ['办结用时P90(分)', 'resolve p90 (min)'],
  'col.coverage': ['在线覆盖率', 'live-feed coverage'],
  // the registry import
  import_title: ['导入名录（CSV 或 JSON）', 'Import into the registry (CSV or JSON)'], import_kind: ['导入到', 'Import into'],
  import_file: ['文件', 'File'], import_check: ['检查（试导入）', 'Check (dry run)'],
  import_hint: ['先试导入：逐行检查，不写入任何数据；全部通过后再确认导入。CSV 首行为字段名，列表字段以分号分隔；字段说明见 docs/registry-import.md。', 'A dry run first: every row is checked and nothing is written; once it passes, confirm the import. CSV: a header row with the field names, list fields separated by semicolons; fields in docs/registry-import.md.'],
  import_no_file: ['请选择要导入的文件', 'Choose a file to import'],
  import_bad_ext: ['文件名须以 .csv 或 .json 结尾：', 'The file name must end in .csv or .json:'],
  import_empty: ['文件为空：', 'The file is empty:'],
  import_dry_ok: ['试导入通过：', 'Dry run passed:'], import_not_yet: ['尚未写入任何数据。', 'Nothing has been written yet.'],
  import_confirm: ['确认导入', 'Confirm the import'],
  import_confirm_text: ['导入后同编号（信用代码、人员编号、事项编号）的记录将被替换。确定导入的行数：', 'Rows with the same key (credit code, inspector id, item id) will be replaced. Rows to import:'],
  import_done: ['已导入，行数：', 'Imported, rows:'],
  import_refused: ['未导入任何数据，请修改以下各行后重新检查。', 'Nothing was imported: correct the rows below and check again.'],
  import_unreadable: ['文件无法读取，未导入任何数据：', 'The file cannot be read; nothing was imported:'],
  import_failed: ['导入失败', 'The import failed'],
  rows_read: ['读取行数', 'rows read'], rows_accepted: ['可导入', 'accepted'], rows_rejected: ['被拒绝', 'rejected'], whole_row: ['整行', 'whole row'],
  // joint inspections
  year: ['年度', 'Year'], bad_year: ['年度须为四位数字，例如 2026：', 'The year must be four digits, e.g. 2026:'],
  load_failed: ['读取失败', 'Could not load'], action_failed: ['操作失败', 'The action failed'],
  joint_quota: ['各部门联合抽查比例', 'Joint inspections per department'],
  joint_quota_hint: ['按该年度已抽取的随机抽查任务计（异常与转办任务不计）：随机抽查任务不超过100项的部门，联合抽查不少于10%且至少1项；超过100项的，取各小部门的平均数或3%–5%。', 'Counted over the year’s drawn random tasks (anomaly and referral tasks do not count): a department with at most 100 random tasks needs 10 % joint, at least 1; above 100, the small departments’ average or 3–5 %.'],
  joint_planned: ['按年度计划', 'Against the annual plans'], joint_plans: ['联合抽查计划', 'Joint plans'], joint_tasks: ['联合检查任务', 'Joint tasks'],
  met: ['已达标', 'met'], not_met: ['未达标', 'not met'], batches_drawn: ['已抽批次', 'batches drawn'],
  joint_plan_tasks: ['联合抽查计划各批次的任务', 'Tasks of the joint plans per batch'], not_drawn: ['尚未抽取', 'not drawn yet'],
  show_tasks: ['查看任务', 'Show the tasks'], not_yours: ['（其他部门，无权查看）', '(another department’s: not shown)'], joint_tasks_cut: ['任务过多，仅统计最新的', 'Too many tasks: counted over the newest'],
  joint_rule_none: ['本年度无随机抽查任务', 'no random tasks this year'],
  joint_rule_small: ['随机抽查{n}项（不超过100项）：按10%计，至少1项', '≤ 100 random tasks ({n}): 10 %, at least 1'],
  joint_rule_large: ['随机抽查{n}项（超过100项）：取各小部门平均数或3%–5%', '> 100 random tasks ({n}): the small departments’ average or 3–5 %'],
  // the audit log's verification
  audit_ok: ['审计链完整：每条记录的哈希均可复算，链接连续，无缺失、重复或乱序。', 'The audit chain verifies: every hash recomputes, every link holds, nothing is missing, repeated or reordered.'],
  audit_broken: ['审计链已损坏！', 'The audit chain is broken!'], audit_broken_from: ['自此条起不可信：', 'untrustworthy from entry'],
  audit_published_head: ['已公布的哈希', 'Published head'], audit_head_missing: ['日志中没有该哈希的条目：日志在公布后被截断或改写', 'no entry has this hash: the log was truncated or rewritten after it was published'],
  audit_problems: ['发现的问题', 'Problems found'], audit_verified: ['核验时间', 'Verified'],
  audit_check_head: ['与之前公布的最新哈希核对', 'Check against a head published earlier'], audit_head_hint: ['64位十六进制哈希', '64 hex digits'],
  audit_verify: ['核验', 'Verify'], audit_cli: ['也可离线核验：', 'Verify offline too:'], audit_verify_failed: ['核验失败', 'Verification failed'],
  audit_latest: ['最近200条', 'Latest 200 entries'],
  'problem.hash_mismatch': ['哈希不符（内容被修改）', 'hash mismatch (content edited)'], 'problem.broken_link': ['链接断裂', 'broken link'],
  'problem.missing': ['条目缺失（被删除）', 'missing (deleted)'], 'problem.duplicate': ['序号重复', 'duplicate seq'],
  'problem.out_of_order': ['顺序错乱', 'out of order'], 'problem.bad_field': ['字段格式错误', 'malformed field'],
  'problem.unreadable': ['无法读取', 'unreadable'], 'problem.head_not_found': ['公布的哈希不在日志中', 'published head not found'],
  'col.line': ['行号', 'line'], 'col.field': ['字段', 'field'], 'col.random_tasks': ['随机抽查任务', 'random tasks'],
  'col.required': ['应联合抽查', 'joint required'], 'col.joint_tasks': ['已联合抽查', 'joint tasks'], 'col.progress': ['进度', 'progress'],
  'col.met': ['是否达标', 'met'], 'col.rule': ['规则', 'rule'], 'col.initiator': ['发起部门', 'initiating department'],
  'col.partners': ['参与部门', 'partner departments'], 'col.window': ['检查期间', 'window'], 'col.departments': ['部门', 'departments'],
  'col.items': ['检查事项', 'items'], 'col.tasks': ['任务', 'tasks'], 'col.batch': ['批次', 'batch'], 'col.entities': ['对象数', 'entities'], 'col.problem': ['问题', 'problem'], 'col.message': ['说明', 'message'],
  'dept.fire': ['消防救援机构', 'fire department'],
  'col.classes': ['各风险类别 已抽取/计划（对象数）', 'per class drawn / planned (population)'],
  'stat.readings_ingested': ['已接收读数', 'readings ingested'], 'stat.events_ingested': ['已接收事件记录', 'events ingested'],
  'stat.batches_committed': ['已提交批次', 'batches committed'], 'stat.messages_rejected': ['被拒绝的消息', 'messages rejected'],
  'stat.readings_rejected': ['被拒绝的读数', 'readings rejected'], 'stat.duplicates_dropped': ['丢弃的重复批次', 'duplicates dropped'],
  'stat.agents_online': ['在线采集端', 'agents online'], 'stat.anomaly_tasks_opened': ['已开启异常任务', 'anomaly tasks opened'],
  'auditkind.draw_committed': ['抽取承诺', 'draw committed'], 'auditkind.draw_revealed': ['抽取揭示', 'draw revealed'], 'auditkind.recusal': ['回避', 'recusal'], 'auditkind.assignment': ['指派检查人员', 'assignment'], 'auditkind.task_opened': ['任务开启', 'task opened'], 'auditkind.task_acknowledged': ['任务确认', 'task acknowledged'], 'auditkind.verdict': ['核查结论', 'verdict'], 'auditkind.override': ['改判', 'override'], 'auditkind.result_recorded': ['结果记录', 'result recorded'], 'auditkind.publication': ['公示', 'publication'], 'auditkind.rule_pack_activated': ['规则包启用', 'rule pack activated'], 'auditkind.user_created': ['用户创建', 'user created'], 'auditkind.user_changed': ['用户变更', 'user changed'], 'auditkind.token_issued': ['令牌签发', 'token issued'], 'auditkind.token_revoked': ['令牌吊销', 'token revoked'], 'auditkind.session_opened': ['登录', 'session opened'], 'auditkind.session_closed': ['退出', 'session closed'], 'auditkind.registry_changed': ['名录变更', 'registry changed'], 'auditkind.plan_saved': ['计划保存', 'plan saved'], 'auditkind.agent_credential_issued': ['采集端凭证签发', 'agent credential issued'], 'auditkind.agent_credential_rotated': ['采集端凭证轮换', 'agent credential rotated'], 'auditkind.agent_credential_revoked': ['采集端凭证吊销', 'agent credential revoked'],
  'itemkind.general': ['一般', 'general'], 'itemkind.key': ['重点', 'key'],
  'method.remote': ['远程', 'remote'], 'method.on-site': ['现场', 'on-site'], 'method.both': ['远程及现场', 'remote and on-site'],
  'col.certificate': ['执法证号', 'certificate'], 'col.conflicts': ['回避对象', 'conflicts'],
  commit: ['承诺（抽取前公布）', 'Commit'], reveal: ['揭示（抽取）', 'Reveal'], batches: ['批次', 'Batches'],
  dead_letters: ['死信（被拒绝的消息）', 'Dead letters'],
};
let lang = localStorage.getItem('spotcheck-lang') || 'zh';
export const getLang = () => lang;
export function setLang(l) { lang = l; localStorage.setItem('spotcheck-lang', l); document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en'; }
setLang(lang);
/** The label `key` in the current language (the key itself if unknown, so a gap shows). */
export function t(key) { const e = D[key]; return e ? e[lang === 'zh' ? 0 : 1] : key; }
/** A code's label (`kind`, `open`) if there is one, else the code. */
export function code(group, value) { if (value == null || value === '') return ''; const k = group + '.' + value; return D[k] ? t(k) : String(value); }
/** HTML-escaped text. */
export function esc(s) { return String(s == null ? '' : s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c])); }
/** A label element that the language switch re-renders. */
export function label(key, tag = 'span', attrs = '') { return `<${tag} data-t="${key}"${attrs ? ' ' + attrs : ''}>${esc(t(key))}</${tag}>`; }
/** Of a text given in both languages (a rule's title), the current language's; the other if one is missing. */
export function inLang(en, zh) { return lang === 'zh' ? (zh || en || '') : (en || zh || ''); }
/** A text given in both languages as an element that the switch re-renders; `attrs` go on it. */
export function bilingual(en, zh, attrs = '') { return `<span data-en="${esc(en || zh || '')}" data-zh="${esc(zh || en || '')}"${attrs ? ' ' + attrs : ''}>${esc(inLang(en, zh))}</span>`; }
/** Re-renders every label on the page. */
export function relabel(root = document) {
  for (const el of root.querySelectorAll('[data-zh]')) el.textContent = inLang(el.dataset.en, el.dataset.zh);
  for (const el of root.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  for (const el of root.querySelectorAll('[data-tp]')) el.placeholder = t(el.dataset.tp);
  for (const el of root.querySelectorAll('[data-code]')) { const [g, v] = el.dataset.code.split(':'); el.textContent = code(g, v); }
  for (const el of root.querySelectorAll('[data-ts]')) el.textContent = when(Number(el.dataset.ts));
}
/** A code's label as an element that the switch re-renders. */
export function codeLabel(group, value, cls = '') { return value == null ? '' : `<span data-code="${esc(group + ':' + value)}"${cls ? ` class="${cls}"` : ''}>${esc(code(group, value))}</span>`; }
const fmt = {};
function formatter() {
  return fmt[lang] || (fmt[lang] = new Intl.DateTimeFormat(lang === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }));
}
/** A moment in China Standard Time. */
export function when(ms) { return ms ? formatter().format(new Date(ms)) : ''; }
/** A moment as an element that the switch re-renders. */
export function time(ms) { return ms ? `<time data-ts="${ms}">${esc(when(ms))}</time>` : ''; }
/** Today in China (YYYY-MM-DD). */
export function chinaDay(ms = Date.now()) { return new Date(ms + 8 * 3600e3).toISOString().slice(0, 10); }
