"""Population designer: start from a shipped or saved spec or from a CSV of patients, edit every attribute's
distribution, see the population (marginals per sex, pair plot, bias split), check it against the
generator's training support, and save it to the workspace or download it.

The whole form lives in this session's state under ``pop_f_*`` keys (see vctcore.population_design);
nothing is kept in module globals, so two browser sessions never see each other's edits.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from vctcore import population_design as design
from vctcore import population_plots as plots
from vctcore.attributes import ATTRIBUTES
from vctcore.population import SPLIT_COLUMNS, PopulationSpec, SpecError, allowed_dists

F = "pop_f_"  # prefix of the form's widget keys
SOURCES = ("a population spec", "a CSV of patients")
DEFAULT_SOURCE = "shipped/adult_reference"
DIST_LABELS = {"fixed": "fixed value", "uniform": "uniform", "normal": "normal", "truncnormal": "truncated normal",
               "lognormal": "log-normal", "categorical": "categorical", "empirical": "empirical (CSV rows)",
               "relation": "published relation + noise", "bmi": "from BMI (weight = BMI x height²)"}
SEX_LABELS = {"F": "women", "M": "men"}
DEFAULTS: dict[str, Any] = {"pop_loaded": None, "pop_upload_result": None, "pop_n": 300, "pop_seed": 0,
                            "pop_overwrite": False}


def init_state() -> None:
    """Session defaults, and keep the values of form widgets this run does not draw (Streamlit drops the
    state of widgets left out of a run, e.g. the mean of a distribution switched to uniform)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    for key in [k for k in st.session_state if k.startswith(F)]:
        st.session_state[key] = st.session_state[key]


def load_form(form: dict[str, Any], source: str) -> None:
    for key, value in form.items():
        st.session_state[F + key] = value
    st.session_state["pop_loaded"] = source


def current_form() -> dict[str, Any]:
    return {k[len(F):]: v for k, v in st.session_state.items() if k.startswith(F)}


def choose_source() -> None:
    """The start: a spec (shipped or saved in the workspace) or an uploaded CSV fitted to a spec."""
    how = st.radio("Start from", SOURCES, key="pop_how", horizontal=True)
    specs = design.list_specs()
    if how == SOURCES[0]:
        label = st.selectbox("Population spec", list(specs), key="pop_source")
        if st.session_state["pop_loaded"] != f"spec:{label}":
            try:
                load_form(design.form_from_spec(PopulationSpec.from_yaml(specs[label])), f"spec:{label}")
            except SpecError as err:
                st.error(f"{specs[label].name}: {err}")
    else:
        upload_csv()
    if st.session_state["pop_loaded"] is None:  # nothing loaded yet (e.g. a CSV that failed): the reference
        load_form(design.form_from_spec(PopulationSpec.from_yaml(specs[DEFAULT_SOURCE])), f"spec:{DEFAULT_SOURCE}")


def upload_csv() -> None:
    up = st.file_uploader("CSV of patients: sex, age_years, height_cm, weight_kg (bfp_pct, mmp_pct, "
                          "bone_density_hu and id optional)", type=["csv"], key="pop_upload")
    if up is None:
        st.caption(f"Up to {design.MAX_UPLOAD_BYTES // 2**20} MB. vct fits a spec to the rows: the share of "
                   "women, and truncated normals per sex for age, height and BMI.")
        return
    content = up.getvalue()
    key = f"csv:{design.content_key(up.name, content)}"
    result = st.session_state["pop_upload_result"]
    if result is None or result["key"] != key:
        try:
            got = design.read_population_upload(up.name, content)
            spec = design.spec_from_table(got.table, name=up.name.rsplit(".", 1)[0], measured=got.measured,
                                          source=got.name)
            load_form(design.form_from_spec(spec), key)
            result = {"key": key, "error": None, "notes": [f"Fitted to {len(got.table)} patients of {got.name}."]
                      + list(got.notes)}
        except (design.UploadError, SpecError) as err:
            result = {"key": key, "error": str(err), "notes": []}
        st.session_state["pop_upload_result"] = result
    if result["error"]:
        st.error(result["error"])
    for note in result["notes"]:
        st.caption(note)


def number(label: str, key: str, **kwargs: Any) -> None:
    st.number_input(label, key=F + key, step=kwargs.pop("step", 0.1), format="%g", **kwargs)


def param_inputs(name: str, dist: str) -> None:
    """One number per parameter of ``dist`` (a pair for women and men when per-sex values are on)."""
    params, required = design.dist_params(dist)
    if not params:
        return
    per_sex = st.checkbox("Different values for women and men", key=f"{F}{name}.per_sex")
    unit = "kg/m2" if dist == "bmi" else ATTRIBUTES[name].unit
    for param in params:
        tag = "" if param in required else ", optional"
        sexes = ("F", "M") if per_sex else ("F",)
        for col, sex in zip(st.columns(len(sexes)), sexes):
            who = f" · {SEX_LABELS[sex]}" if per_sex else ""
            with col:
                number(f"{param}{who} ({unit}{tag})", design.form_key(name, dist, param, sex))


def attribute_editor(name: str, form: dict[str, Any], error: tuple[str, str] | None) -> None:
    attr = ATTRIBUTES[name]
    dist = form.get(f"{name}.dist")
    title = f"{attr.label} ({attr.unit}) · {DIST_LABELS.get(dist, 'sampled jointly')}"
    with st.expander(title, expanded=error is not None and error[0] == name):
        if dist is None:
            st.caption("Sampled jointly by another attribute's empirical CSV.")
            return
        options = [d for d in allowed_dists(name) if d != "empirical" or form.get(f"{name}.empirical")]
        dist = st.selectbox("Distribution", options, key=f"{F}{name}.dist", format_func=DIST_LABELS.get)
        if dist == "empirical":
            st.caption(f"Rows resampled from {form[f'{name}.empirical']['path']}")
        else:
            if dist == "bmi":
                st.selectbox("BMI shape", design.BMI_SHAPES, key=f"{F}{name}.bmi.shape")
            if dist == "relation":
                st.caption("Mean from the published relation of the attributes sampled before it; sd replaces "
                           "the residual sd, shift moves the mean.")
            param_inputs(name, dist)
        if error is not None and error[0] == name:
            st.error(error[1])


def sex_editor(form: dict[str, Any], error: tuple[str, str] | None) -> None:
    options = ["categorical", "fixed"] + (["empirical"] if form.get("sex.empirical") else [])
    if form.get("sex.dist") is None:
        st.caption("Sex is sampled jointly by an empirical CSV.")
        return
    c1, c2 = st.columns(2)
    dist = c1.selectbox("Sex", options, key=F + "sex.dist", format_func=DIST_LABELS.get)
    with c2:
        if dist == "categorical":
            number("Share of women (0-1)", "sex.p_F", min_value=0.0, max_value=1.0, step=0.01)
        elif dist == "fixed":
            st.selectbox("Everyone is", ["F", "M"], key=F + "sex.value", format_func=SEX_LABELS.get)
    if error is not None and error[0] == "sex":
        st.error(error[1])


def constraints_editor(error: tuple[str, str] | None) -> None:
    with st.expander("Constraints (hard limits, empty = open)", expanded=error is not None and error[0] == "constraints"):
        for col in SPLIT_COLUMNS:
            c1, c2 = st.columns(2)
            with c1:
                number(f"{plots.axis_label(col)} low", f"constraints.{col}.low")
            with c2:
                number(f"{plots.axis_label(col)} high", f"constraints.{col}.high")
        number("Body fat + muscle at most (%)", "constraints.bfp_plus_mmp_max")
        if error is not None and error[0] == "constraints":
            st.error(error[1])


def split_editor(error: tuple[str, str] | None) -> None:
    with st.expander("Bias split (a·x + b·y + c > 0 or < 0)", expanded=error is not None and error[0] == "split"):
        if st.checkbox("Keep one side of a linear boundary", key=F + "split.on"):
            c1, c2 = st.columns(2)
            c1.selectbox("x", SPLIT_COLUMNS, key=F + "split.x", format_func=plots.axis_label)
            c2.selectbox("y", SPLIT_COLUMNS, key=F + "split.y", format_func=plots.axis_label)
            c1, c2, c3 = st.columns(3)
            with c1:
                number("a (coefficient of x)", "split.a", step=0.01)
            with c2:
                number("b (coefficient of y)", "split.b", step=0.01)
            with c3:
                number("c (intercept)", "split.intercept", step=1.0)
            st.radio("Keep the side where the score is", design.SPLIT_KEEP, key=F + "split.keep", horizontal=True,
                     format_func=lambda k: "> 0 (above)" if k == "above" else "< 0 (below)")
        if error is not None and error[0] == "split":
            st.error(error[1])


@st.cache_data(max_entries=32, show_spinner=False)
def sample(spec_yaml: str, n: int, seed: int, *, split: bool = True) -> pd.DataFrame:
    """A sample of the spec (with a bmi column); ``split=False``: the population before its split."""
    spec = PopulationSpec.from_yaml(spec_yaml)
    return design.with_bmi((spec if split else design.without_split(spec)).sample(n, seed=seed))


def show_population(spec: PopulationSpec) -> pd.DataFrame | None:
    c1, c2 = st.columns(2)
    n = c1.number_input("Patients in the preview sample", 20, 5000, key="pop_n", step=50)
    seed = c2.number_input("Seed", 0, 2**31 - 1, key="pop_seed")
    text = spec.to_yaml()
    try:
        with st.spinner("Sampling…"):
            df = sample(text, int(n), int(seed))
            before = sample(text, int(n), int(seed), split=False) if spec.split is not None else None
    except SpecError as err:
        st.error(str(err))
        return None
    share_f = float((df["sex"] == "F").mean())
    st.caption(f"{len(df)} patients, {100 * share_f:.0f} % women, seed {int(seed)}.")
    tabs = st.tabs(["Marginals", "Pair plot"] + (["Split"] if before is not None else []) + ["Table"])
    tabs[0].plotly_chart(plots.marginals_figure(df), key="pop_fig_marginals", width="stretch")
    tabs[1].plotly_chart(plots.pair_figure(df), key="pop_fig_pairs", width="stretch")
    if before is not None:
        tabs[2].plotly_chart(plots.split_figure(before, spec.split), key="pop_fig_split", width="stretch")
    tabs[-1].dataframe(df.round(2), hide_index=True, width="stretch", height=300)
    return df


def show_support(df: pd.DataFrame) -> None:
    gens = design.list_generators()
    if not gens:
        st.info("No generator with a recorded training support in checkpoints/.")
        return
    name = st.selectbox("Generator", list(gens), key="pop_generator")
    try:
        support = design.generator_support(gens[name])
    except ValueError as err:
        st.error(str(err))
        return
    lines = design.support_warnings(df, support)
    for line in lines:
        st.warning(line, icon=":material/warning:")
    if not lines:
        st.success(f"Every patient of the sample lies inside the training support of generator '{name}'.")
    with st.expander("Training support"):
        st.dataframe(design.support_table(df, support), hide_index=True, width="stretch")


def save_panel(spec: PopulationSpec) -> None:
    st.caption(f"Saves to {design.populations_dir() / (str(spec.name) + '.yaml')} (the name above is the file name).")
    c1, c2, c3 = st.columns([1, 1, 1.2])
    overwrite = c3.checkbox("overwrite", key="pop_overwrite")
    if c1.button("Save to workspace", key="pop_save", type="primary"):
        try:
            path = design.save_spec(spec, overwrite=overwrite)
            st.success(f"Saved {path}")
        except (ValueError, OSError) as err:
            st.error(str(err))
    c2.download_button("Download YAML", spec.to_yaml(), file_name=f"{spec.name}.yaml", mime="application/x-yaml",
                       key="pop_download")


init_state()
st.title("Population designer")
st.caption("Describe the target population of a virtual trial: who the synthetic patients are. vct samples it, "
           "shows it, and warns where it leaves what the generator was trained on.")
choose_source()
form = current_form()
try:
    spec, error = design.spec_from_form(form), None
except SpecError as err:
    spec, error = None, (design.error_section(str(err)), str(err))

edit, view = st.columns([1, 1.5], gap="large")
with edit:
    st.subheader("Settings")
    st.text_input("Name (also the file name)", key=F + "name")
    st.text_area("Description", key=F + "description", height=80)
    if error is not None and error[0] == "general":
        st.error(error[1])
    sex_editor(form, error)
    for attribute in design.EDITABLE:
        attribute_editor(attribute, form, error)
    constraints_editor(error)
    split_editor(error)
with view:
    st.subheader("The population")
    if spec is None:
        st.info("Fix the setting shown in red to see the population.", icon=":material/edit:")
    else:
        table = show_population(spec)
        if table is not None:
            st.subheader("Generator support")
            show_support(table)
            st.subheader("Save")
            save_panel(spec)
