#!/usr/bin/env bash
# Every shell step of the review loop of a plan change: planc check, planc diff, the saved plan,
# and the preview posted as pull-request (GitHub) or merge-request (GitLab) comments that the
# next run updates in place. .github/workflows/plan-review.yml and
# .gitlab/plan-review.gitlab-ci.yml only call it; compiler/tests/review_loop.rs runs it against
# local emulations of both APIs. `plan-review.sh --help` says how to use it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: plan-review.sh [OPTIONS] PLAN...
       plan-review.sh [OPTIONS] --changed-since REF

Reviews plan changes the way a pull request needs them, plan by plan:

  1. planc check    every diagnostic: as annotations on the plan's lines (GitHub), or in the
                    log and a Code Quality report (GitLab)
  2. planc diff     what every step will change, previewed against a captured state, as
                    Markdown comments under GitHub's 65,536-character limit (comment-N.md)
  3. planc render   the saved plan (saved-plan.json) that `planx apply` runs, for the artifact
  4. posting        one comment per part on the pull or merge request, updated in place by the
                    next run

Run it from the repository's root: plan paths name the comments.

Which plans:
  PLAN...                  the plan files, e.g. plans/vault-aks-migration.yaml
  --changed-since REF      the plans that changed since the git commit REF: a plan whose file,
                           X.params.yaml or captured state changed, and every plan when a file
                           in a folder under --plans-dir (a module) or the --states file changed
  --plans-dir DIR          where --changed-since finds plans: DIR/*.yaml except *.params.yaml
                           (default: plans)

Their inputs:
  --params FILE            the plan's parameters (repeatable, later files win; with one PLAN
                           only). Default: X.params.yaml beside X.yaml when there is one
  --state DIR              the captured state every plan is previewed against: one folder per
                           kubernetes target, `kubectl get -o yaml` output (planc diff --help)
  --states FILE            a map from plans to captured states instead: one `GLOB DIR` a line,
                           the first glob matching the plan's path wins; `#` starts a comment

Output:
  --out DIR                where the files go (default: plan-review): DIR/<plan>/check.txt,
                           comment-N.md (exactly what is posted, without the marker) and
                           saved-plan.json; with gitlab also DIR/gl-code-quality-report.json
  --forge github|gitlab|none
                           where the comments go (default: github under GitHub Actions, gitlab
                           under GitLab CI, else none, which writes the files only)
  -h, --help               this text

Environment:
  PLANC     the planc binary (default: planc on PATH)
  github    GITHUB_TOKEN; GITHUB_REPOSITORY (owner/repo); GITHUB_EVENT_PATH, the pull_request
            event (its .pull_request.number); GITHUB_API_URL (default https://api.github.com).
            The job needs `permissions: pull-requests: write`.
  gitlab    PLANC_GITLAB_TOKEN, a project access token with the api scope (Reporter role or
            more) in a masked CI/CD variable; CI_API_V4_URL, CI_PROJECT_ID and
            CI_MERGE_REQUEST_IID, which merge-request pipelines set.

The comments:
  Each part starts with a hidden marker, `<!-- planc-preview plan=PLAN part=N -->`. A run lists
  the request's comments (every page), updates the one carrying the same marker in place, leaves
  it alone when it already says the same, and creates the parts that are missing. When a
  preview shrinks, its leftover parts are edited to say they are superseded: they keep their
  marker and are reused if it grows again; nothing is deleted, and no other comment is touched.
  A plan with errors gets one comment with them instead of its preview. Pull requests from
  forks get a read-only token: their comments are not posted, the files are still written.
  The token reaches curl through a config on standard input (`curl --config -`), never through
  a command line, and is never printed.

Exit status: 0 every plan is clean (warnings allowed); 1 a plan has errors or cannot be
previewed, or the forge refused a request (the message names it and says what to do);
2 wrong usage or setup.

Examples:
  plan-review.sh --forge none --state tests/state/aks plans/vault-aks-migration.yaml
  plan-review.sh --forge github --changed-since HEAD^1 --states .github/plan-review.states
EOF
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

usage_error() {
  printf 'error: %s\n(plan-review.sh --help says how)\n' "$*" >&2
  exit 2
}

# tidy PATH: PATH without a leading ./ or a trailing /, so that it compares with git's paths.
tidy() {
  local path=${1#./}
  printf '%s\n' "${path%/}"
}

plans=()
params=()
state=""
states=""
since=""
plans_dir=plans
out="plan-review"
forge=""
while (($#)); do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --changed-since | --plans-dir | --params | --state | --states | --out | --forge)
      (($# >= 2)) || usage_error "$1 needs a value"
      case $1 in
        --changed-since) since=$2 ;;
        --plans-dir) plans_dir=$(tidy "$2") ;;
        --params) params+=("$2") ;;
        --state) state=$(tidy "$2") ;;
        --states) states=$(tidy "$2") ;;
        --out) out=$(tidy "$2") ;;
        --forge) forge=$2 ;;
      esac
      shift 2
      ;;
    --)
      shift
      plans+=("$@")
      break
      ;;
    -*) usage_error "unknown option $1" ;;
    *)
      plans+=("$1")
      shift
      ;;
  esac
done

if [[ -z $forge ]]; then
  if [[ ${GITHUB_ACTIONS-} == true ]]; then
    forge=github
  elif [[ ${GITLAB_CI-} == true ]]; then
    forge=gitlab
  else
    forge=none
  fi
fi
case $forge in
  github | gitlab | none) ;;
  *) usage_error "--forge takes github, gitlab or none, not '$forge'" ;;
esac

planc=${PLANC:-planc}
command -v "$planc" >/dev/null 2>&1 ||
  usage_error "cannot run planc ('$planc'): build it (cargo build --release -p planc) and set PLANC=target/release/planc, or put planc on PATH"
if [[ $forge != none ]]; then
  for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 ||
      usage_error "$tool is missing: posting to $forge needs curl and jq (apt-get install curl jq)"
  done
fi

# ---------------------------------------------------------------------------------------------
# Which captured state each plan is previewed against.

if [[ -n $state && -n $states ]]; then
  usage_error "give --state DIR (one state for every plan) or --states FILE (a map), not both"
fi
if [[ -z $state && -z $states ]]; then
  usage_error "say which captured state to preview against: --state DIR or --states FILE"
fi
state_globs=()
state_dirs=()
if [[ -n $states ]]; then
  [[ -f $states ]] || usage_error "cannot read the states file $states"
  line_number=0
  while IFS= read -r line || [[ -n $line ]]; do
    line_number=$((line_number + 1))
    line=${line%%#*}
    read -r glob dir rest <<<"$line" || true
    [[ -n ${glob-} ]] || continue
    [[ -n ${dir-} && -z ${rest-} ]] ||
      usage_error "$states:$line_number: each line is 'GLOB DIR', e.g. 'plans/vault-aks-*.yaml tests/state/aks'"
    state_globs+=("$glob")
    state_dirs+=("$(tidy "$dir")")
  done <"$states"
fi

# state_for PLAN: prints the captured state of PLAN; fails when there is none.
state_for() {
  if [[ -n $state ]]; then
    printf '%s\n' "$state"
    return 0
  fi
  local i
  for i in "${!state_globs[@]}"; do
    # shellcheck disable=SC2053 # the right side is a glob on purpose
    if [[ $1 == ${state_globs[i]} ]]; then
      printf '%s\n' "${state_dirs[i]}"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Which plans.

if [[ -n $since ]]; then
  ((${#plans[@]} == 0)) || usage_error "give PLAN files or --changed-since, not both"
  changed=$(git diff --name-only "$since" HEAD --) ||
    usage_error "cannot list the files changed since '$since': is it a commit of this clone? A shallow clone needs its parent: fetch-depth: 2 (GitHub) or a larger GIT_DEPTH (GitLab)"

  # touched PLAN: whether the change touches PLAN.
  touched() {
    local plan=$1 file plan_state
    plan_state=$(state_for "$plan") || plan_state=""
    while IFS= read -r file; do
      if [[ -z $file ]]; then
        continue
      elif [[ $file == "$plan" || $file == "${plan%.yaml}.params.yaml" || $file == "$states" ]]; then
        return 0
      elif [[ -n $plan_state && $file == "$plan_state"/* ]]; then
        return 0
      elif [[ $file == "$plans_dir"/*/* ]]; then
        return 0
      fi
    done <<<"$changed"
    return 1
  }

  for plan in "$plans_dir"/*.yaml; do
    if [[ -f $plan && $plan != *.params.yaml ]] && touched "$plan"; then
      plans+=("$plan")
    fi
  done
  if ((${#plans[@]} == 0)); then
    echo "no plan in $plans_dir/ changed since $since: nothing to review"
    exit 0
  fi
elif ((${#plans[@]} == 0)); then
  usage_error "which plans? Name them (plans/x.yaml ...) or give --changed-since REF"
fi
if ((${#params[@]} > 0 && ${#plans[@]} > 1)); then
  usage_error "--params applies to one plan; with several, keep each plan's parameters in X.params.yaml beside X.yaml"
fi
for i in "${!plans[@]}"; do
  plans[i]=$(tidy "${plans[i]}")
  [[ -f ${plans[i]} ]] || usage_error "no plan file ${plans[i]}"
  [[ ${plans[i]} != *'-->'* ]] || usage_error "a plan path cannot contain '-->' (it goes into an HTML comment)"
  state_for "${plans[i]}" >/dev/null ||
    usage_error "no captured state for ${plans[i]}: add a line 'GLOB DIR' matching it to $states"
done

# ---------------------------------------------------------------------------------------------
# Where the comments go.

posting=false
forge_name=""
api_base=""
forge_headers=()
number=""
case $forge in
  github)
    forge_name=GitHub
    [[ ${GITHUB_REPOSITORY-} =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] ||
      usage_error "GITHUB_REPOSITORY must be owner/repo (GitHub Actions sets it), not '${GITHUB_REPOSITORY-}'"
    [[ -n ${GITHUB_EVENT_PATH-} && -f ${GITHUB_EVENT_PATH-} ]] ||
      usage_error "GITHUB_EVENT_PATH must name the event file (GitHub Actions sets it)"
    number=$(jq -r '.pull_request.number // empty' "$GITHUB_EVENT_PATH") ||
      usage_error "cannot read the event in $GITHUB_EVENT_PATH as JSON"
    [[ $number =~ ^[0-9]+$ ]] ||
      usage_error "the event in GITHUB_EVENT_PATH has no .pull_request.number: run this on pull_request events, or with --forge none"
    head_repo=$(jq -r '.pull_request.head.repo.full_name // ""' "$GITHUB_EVENT_PATH")
    if [[ $head_repo != "$GITHUB_REPOSITORY" ]]; then
      echo "::notice title=plan review::pull request #$number comes from a fork (${head_repo:-deleted}): its token is read-only, so the preview is not posted; it is in the artifact"
    else
      [[ -n ${GITHUB_TOKEN:+set} ]] ||
        usage_error "GITHUB_TOKEN is not set: give the step 'env: GITHUB_TOKEN: \${{ github.token }}'"
      posting=true
    fi
    api_base=${GITHUB_API_URL:-https://api.github.com}
    api_base=${api_base%/}
    forge_headers=(--header 'Accept: application/vnd.github+json' --header 'X-GitHub-Api-Version: 2022-11-28')
    list_url="$api_base/repos/$GITHUB_REPOSITORY/issues/$number/comments?per_page=100"
    create_url="$api_base/repos/$GITHUB_REPOSITORY/issues/$number/comments"
    update_method=PATCH
    update_url="$api_base/repos/$GITHUB_REPOSITORY/issues/comments"
    list_filter='[.[] | {id: (.id | tostring), body: (.body // "")}]'
    token_variable=GITHUB_TOKEN
    ;;
  gitlab)
    forge_name=GitLab
    for variable in CI_API_V4_URL CI_PROJECT_ID CI_MERGE_REQUEST_IID; do
      [[ -n ${!variable-} ]] ||
        usage_error "$variable is not set: run this in a merge-request pipeline (rules: if: \$CI_PIPELINE_SOURCE == \"merge_request_event\"), or with --forge none"
    done
    number=$CI_MERGE_REQUEST_IID
    if [[ -n ${CI_MERGE_REQUEST_SOURCE_PROJECT_ID-} && $CI_MERGE_REQUEST_SOURCE_PROJECT_ID != "${CI_MERGE_REQUEST_PROJECT_ID-$CI_PROJECT_ID}" ]]; then
      echo "merge request !$number comes from a fork: its pipeline has no token, so the preview is not posted; it is in the artifacts"
    else
      [[ -n ${PLANC_GITLAB_TOKEN:+set} ]] ||
        usage_error "PLANC_GITLAB_TOKEN is not set: create a project access token with the api scope (Reporter role) and store it as a masked CI/CD variable PLANC_GITLAB_TOKEN"
      posting=true
    fi
    api_base=${CI_API_V4_URL%/}
    forge_headers=(--header 'Accept: application/json')
    notes="$api_base/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
    list_url="$notes?sort=asc&order_by=created_at&per_page=100"
    create_url=$notes
    update_method=PUT
    update_url=$notes
    list_filter='[.[] | select(.system | not) | {id: (.id | tostring), body: (.body // "")}]'
    token_variable=PLANC_GITLAB_TOKEN
    ;;
esac

# The token is read only inside this function, with tracing off, so that neither `bash -x` nor
# an argv shows it: it prints the curl config line that carries it, for `curl --config -`.
auth_config() (
  { set +x; } 2>/dev/null
  local token=${!token_variable}
  if [[ $token == *[$'\r\n']* ]]; then
    echo "error: $token_variable holds a line break; it must be the token alone" >&2
    exit 1
  fi
  token=${token//\\/\\\\}
  token=${token//\"/\\\"}
  if [[ $forge == github ]]; then
    printf 'header = "Authorization: Bearer %s"\n' "$token"
  else
    printf 'header = "PRIVATE-TOKEN: %s"\n' "$token"
  fi
)

if [[ $posting == true ]]; then
  auth_config >/dev/null || exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/plan-review.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------------------------------------
# The forge's API.

# api METHOD URL [JSON_FILE]: one request; the answer goes to $work/response and its headers to
# $work/headers. Dies with what to do when the forge refuses.
api() {
  local method=$1 url=$2 data=${3-} status
  local args=(--silent --show-error --proto '=http,https' --connect-timeout 10 --max-time 120
    --request "$method" --output "$work/response" --dump-header "$work/headers"
    --write-out '%{http_code}' --config - "${forge_headers[@]}")
  if [[ -n $data ]]; then
    args+=(--header 'Content-Type: application/json' --data-binary "@$data")
  fi
  if ! status=$(auth_config | curl "${args[@]}" "$url"); then
    die "cannot reach $forge_name: $method $url failed (curl says why above)"
  fi
  if [[ $status != 2?? ]]; then
    refused "$method" "$url" "$status"
  fi
}

# refused METHOD URL STATUS: dies naming the request, the forge's message and what to do.
refused() {
  local method=$1 url=$2 status=$3 path message hint
  path=${url#"$api_base"}
  path=${path%%\?*}
  message=$(jq -r '.message // empty | tostring' "$work/response" 2>/dev/null) || message=""
  if [[ -z $message ]]; then
    message=$(head -c 300 "$work/response" | tr '\n' ' ')
  fi
  case $forge:$status in
    github:403)
      if [[ $message == *"not accessible by integration"* ]]; then
        hint="the workflow's token may not write pull-request comments: give the job 'permissions: pull-requests: write' (see book/src/ci.md)"
      else
        hint="the token may not do this, or a rate limit was hit (the message says which)"
      fi
      ;;
    github:401) hint="GITHUB_TOKEN was refused: give the step 'env: GITHUB_TOKEN: \${{ github.token }}'" ;;
    github:404) hint="check GITHUB_REPOSITORY ($GITHUB_REPOSITORY) and the pull request number ($number); a token without access to the repository gets 404 too" ;;
    gitlab:401 | gitlab:403) hint="PLANC_GITLAB_TOKEN must be a project (or group) access token with the api scope and the Reporter role or more" ;;
    gitlab:404) hint="check CI_PROJECT_ID ($CI_PROJECT_ID) and CI_MERGE_REQUEST_IID ($number); a token without access to the project gets 404 too" ;;
    *:422 | *:400) hint="the forge refused the comment as invalid" ;;
    *) hint="try again; if it persists, the forge's status page may say why" ;;
  esac
  die "$forge_name refused $method $path: $status ${message:-(no message)}; $hint"
}

# next_link: the rel="next" address of the last answer's Link header, if any.
next_link() {
  tr -d '\r' <"$work/headers" |
    sed -n 's/^[Ll][Ii][Nn][Kk]:[[:space:]]*//p' |
    tr ',' '\n' |
    sed -n 's/^[[:space:]]*<\([^>]*\)>;[[:space:]]*rel="next".*/\1/p' |
    sed -n 1p
}

# list_comments: every comment of the request, every page, as [{id, body}] in
# $work/comments.json.
list_comments() {
  local url=$list_url pages=0
  echo '[]' >"$work/comments.json"
  while [[ -n $url ]]; do
    pages=$((pages + 1))
    ((pages <= 200)) || die "$forge_name kept sending next pages of comments (200 pages); stopping"
    api GET "$url"
    jq -c "$list_filter" "$work/response" >"$work/page.json" 2>/dev/null ||
      die "$forge_name answered GET ${url#"$api_base"} with something other than a list of comments"
    jq -s '.[0] + .[1]' "$work/comments.json" "$work/page.json" >"$work/all.json"
    mv "$work/all.json" "$work/comments.json"
    url=$(next_link)
    if [[ -n $url && $url != "$api_base"/* ]]; then
      die "$forge_name's next page of comments is at $url, outside $api_base: the token is not sent there"
    fi
  done
}

# put_comment ID: makes comment ID say $work/body.md, or creates it when ID is empty; sets `outcome`
# (created, updated or unchanged) and appends the comment's id to `kept`.
put_comment() {
  local id=$1
  jq -n --rawfile body "$work/body.md" '{body: $body}' >"$work/request.json"
  if [[ -z $id ]]; then
    api POST "$create_url" "$work/request.json"
    id=$(jq -r '.id // empty | tostring' "$work/response")
    [[ -n $id ]] || die "$forge_name created a comment but did not say its id"
    outcome=created
  elif jq -e --arg id "$id" --rawfile body "$work/body.md" \
    'any(.[]; .id == $id and .body == $body)' "$work/comments.json" >/dev/null; then
    outcome=unchanged
  else
    api "$update_method" "$update_url/$id" "$work/request.json"
    outcome=updated
  fi
  kept+=("$id")
}

# post PLAN DIR: DIR/comment-N.md as the comments of PLAN, each after its marker; then the
# leftover comments of PLAN marked superseded.
post() {
  local plan=$1 dir=$2 parts=0 part marker id leftovers superseded=0
  local -A count=([created]=0 [updated]=0 [unchanged]=0)
  kept=()
  while [[ -f $dir/comment-$((parts + 1)).md ]]; do
    parts=$((parts + 1))
  done
  list_comments
  for ((part = 1; part <= parts; part++)); do
    marker="<!-- planc-preview plan=$plan part=$part -->"
    {
      printf '%s\n' "$marker"
      cat "$dir/comment-$part.md"
    } >"$work/body.md"
    id=$(jq -r --arg marker "$marker" \
      'first(.[] | select(.body | split("\n")[0] | rtrimstr("\r") == $marker) | .id) // empty' \
      "$work/comments.json")
    put_comment "$id"
    count[$outcome]=$((count[$outcome] + 1))
  done
  # Comments of this plan that no part uses now: parts of a longer preview, or duplicates.
  leftovers=$(jq -r --arg prefix "<!-- planc-preview plan=$plan part=" \
    --argjson kept "$(jq -n '$ARGS.positional' --args "${kept[@]}")" \
    '.[] | select((.body | startswith($prefix)) and (.id as $id | any($kept[]; . == $id) | not))
       | .id' "$work/comments.json")
  while IFS= read -r id; do
    [[ -n $id ]] || continue
    marker=$(jq -r --arg id "$id" \
      'first(.[] | select(.id == $id) | .body | split("\n")[0] | rtrimstr("\r"))' \
      "$work/comments.json")
    {
      printf '%s\n' "$marker"
      # shellcheck disable=SC2016 # the backticks are Markdown
      printf '_Superseded: the planc preview of `%s` now has %d part(s), above; this one is left over from a longer preview._\n' "$plan" "$parts"
    } >"$work/body.md"
    put_comment "$id"
    if [[ $outcome == updated ]]; then
      superseded=$((superseded + 1))
    fi
  done <<<"$leftovers"
  echo "$plan: $parts comment(s) on $forge_name #$number: ${count[created]} created, ${count[updated]} updated, ${count[unchanged]} unchanged; $superseded leftover(s) marked superseded"
}

# ---------------------------------------------------------------------------------------------
# The review of one plan: its files in $out.

group() {
  if [[ $forge == github ]]; then
    printf '::group::%s\n' "$1"
  else
    printf '== %s\n' "$1"
  fi
}

endgroup() {
  if [[ $forge == github ]]; then
    echo '::endgroup::'
  fi
}

# stand_in PLAN DIR TITLE TEXT_FILE: DIR/comment-1.md says TITLE and shows TEXT_FILE instead of
# the preview of PLAN.
stand_in() {
  local plan=$1 dir=$2 title=$3 text=$4 fence='```'
  while grep -qF -- "$fence" "$text"; do
    fence+='`'
  done
  rm -f "$dir"/comment-*.md
  {
    printf '### planc: %s\n\n' "$title"
    # shellcheck disable=SC2016 # the backticks are Markdown
    printf 'The preview of `%s` comes back here once this is fixed.\n\n%stext\n' "$plan" "$fence"
    head -c 50000 "$text"
    printf '\n%s\n' "$fence"
  } >"$dir/comment-1.md"
}

failed=()
quality=()
dirs=()
for plan in "${plans[@]}"; do
  slug=${plan%.yaml}
  dir=$out/${slug//\//__}
  dirs+=("$dir")
  mkdir -p "$dir"
  rm -f "$dir"/comment-*.md "$dir"/check.txt "$dir"/check.json "$dir"/saved-plan.json
  plan_args=("$plan")
  if ((${#params[@]} > 0)); then
    for file in "${params[@]}"; do
      plan_args+=(--params "$file")
    done
  elif [[ -f ${plan%.yaml}.params.yaml ]]; then
    plan_args+=(--params "${plan%.yaml}.params.yaml")
  fi
  plan_state=$(state_for "$plan")

  group "planc check $plan"
  status=0
  if [[ $forge == github ]]; then
    "$planc" check "${plan_args[@]}" --format github >"$dir/check.txt" || status=$?
  else
    "$planc" check "${plan_args[@]}" >"$dir/check.txt" || status=$?
  fi
  cat "$dir/check.txt"
  if [[ $forge == gitlab ]] && ((status < 2)); then
    "$planc" check "${plan_args[@]}" --format json >"$dir/check.json" || true
    quality+=("$dir/check.json")
  fi
  endgroup
  if ((status != 0)); then
    "$planc" check "${plan_args[@]}" --max-diagnostics 20 >"$work/human.txt" 2>&1 || true
    stand_in "$plan" "$dir" "\`$plan\` has errors" "$work/human.txt"
    failed+=("$plan")
    continue
  fi

  group "planc diff $plan --state $plan_state"
  status=0
  "$planc" diff "${plan_args[@]}" --state "$plan_state" --format markdown --comments-dir "$dir" \
    >/dev/null 2>"$work/diff.txt" || status=$?
  if ((status != 0)); then
    cat "$work/diff.txt" >&2
    stand_in "$plan" "$dir" "\`$plan\` cannot be previewed against \`$plan_state\`" "$work/diff.txt"
    failed+=("$plan")
    endgroup
    continue
  fi
  status=0
  "$planc" render "${plan_args[@]}" --state "$plan_state" -o "$dir/saved-plan.json" \
    2>"$work/render.txt" || status=$?
  if ((status != 0)); then
    cat "$work/render.txt" >&2
    stand_in "$plan" "$dir" "the saved plan of \`$plan\` cannot be written" "$work/render.txt"
    failed+=("$plan")
    endgroup
    continue
  fi
  parts=$(find "$dir" -maxdepth 1 -name 'comment-*.md' | wc -l)
  echo "$plan: preview in $parts part(s) and the saved plan in $dir/"
  endgroup
done

if [[ $forge == gitlab ]]; then
  # GitLab's Code Quality report: the diagnostics in the merge request's widget and diff.
  report=$out/gl-code-quality-report.json
  if ((${#quality[@]} > 0)); then
    jq -s '[.[].diagnostics[] | {
        description: "\(.code) \(.title): \(.message)\(if .help then " (help: \(.help))" else "" end)",
        check_name: .code,
        fingerprint: "\(.code):\(.file):\(.line):\(.column):\(.message)",
        severity: (if .severity == "error" then "major" else "minor" end),
        location: {path: .file, lines: {begin: (.line // 1)}}
      }]' "${quality[@]}" >"$report"
  else
    echo '[]' >"$report"
  fi
fi

if [[ $posting == true ]]; then
  for i in "${!plans[@]}"; do
    post "${plans[i]}" "${dirs[i]}"
  done
fi

if ((${#failed[@]} > 0)); then
  where="above"
  if [[ $posting == true ]]; then
    where="above and in their comments"
  fi
  printf 'error: %d plan(s) cannot go ahead: %s; their errors are %s\n' \
    "${#failed[@]}" "${failed[*]}" "$where" >&2
  exit 1
fi
