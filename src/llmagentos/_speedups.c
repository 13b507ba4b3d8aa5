/* The Agent's lean act() and step() in C: llmagentos.agent_core.AgentCore, compiled.
 *
 * Same behaviour as the Python AgentCore in agent_core.py, which is the reference and
 * the fallback: the lean paths for seed-style modules, and every other case handed to
 * the Agent's Python methods (_act_slow, _step_slow, _seed_result, _fail, _notify).
 * What C saves is the interpreter's frame for act() and step() themselves and the
 * bytecodes of the bookkeeping around the four module calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *lean_act;   /* (perceive, plan), or None: act() takes the slow path */
    PyObject *lean_step;  /* (execute, learn), or None: step() takes the slow path */
    PyObject *acted;      /* the latest act: (observation, features, action, decision) */
    PyObject *stepped;    /* the act the latest step carried out */
    PyObject *returned;   /* what the latest step returned: (observation, reward) */
    PyObject *training;
    PyObject *listeners;
    Py_ssize_t step_index;
    double episode_return;
} AgentCore;

static PyObject *str_act_slow, *str_step_slow, *str_seed_result, *str_fail, *str_notify;
static PyObject *str_perception, *str_planning, *str_execution, *str_learning;
static PyObject *str_observation, *str_action;

/* The module call raised: hand it to Agent._fail(module, err, value), as the Python
 * path's `except Exception as err: self._fail(...)` does, with err as the exception
 * being handled (so what _fail raises has it as its __context__). BaseExceptions
 * that are not Exceptions (KeyboardInterrupt, SystemExit) pass through untouched. */
static void
fail(AgentCore *self, PyObject *module, PyObject *value)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return;
    }
    PyObject *type, *err, *traceback;
    PyErr_Fetch(&type, &err, &traceback);
    PyErr_NormalizeException(&type, &err, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(err, traceback);
    }
    PyObject *handled = PyErr_GetHandledException();
    PyErr_SetHandledException(err);
    PyObject *args[] = {(PyObject *)self, module, err, value};
    PyObject *result = PyObject_VectorcallMethod(
        str_fail, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    PyErr_SetHandledException(handled);
    Py_XDECREF(handled);
    Py_XDECREF(result);
    if (result != NULL) { /* _fail always raises; if it did not, keep the error */
        PyErr_Restore(type, err, traceback);
        return;
    }
    Py_XDECREF(type);
    Py_XDECREF(err);
    Py_XDECREF(traceback);
}

/* The one argument of act(observation) / step(action), positional or by name. */
static PyObject *
one_argument(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
             PyObject *name, const char *method)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw == 1) {
        if (nkw == 0) {
            return args[0];
        }
        PyObject *key = PyTuple_GET_ITEM(kwnames, 0);
        if (PyUnicode_Check(key) && PyUnicode_Compare(key, name) == 0) {
            return args[0];
        }
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                     method, key);
        return NULL;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes exactly one argument (%U), %zd given",
                 method, name, nargs + nkw);
    return NULL;
}

static PyObject *
call_slow(AgentCore *self, PyObject *method, PyObject *value)
{
    PyObject *args[] = {(PyObject *)self, value};
    return PyObject_VectorcallMethod(method, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
core_act(AgentCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *observation;
    if (nargs == 1 && kwnames == NULL) {
        observation = args[0];
    }
    else {
        observation = one_argument(args, nargs, kwnames, str_observation, "act");
        if (observation == NULL) {
            return NULL;
        }
    }
    PyObject *lean = self->lean_act;
    if (lean == NULL || !PyTuple_CheckExact(lean) || PyTuple_GET_SIZE(lean) != 2) {
        return call_slow(self, str_act_slow, observation);
    }
    Py_INCREF(lean); /* a module may change the agent's paths while it runs */
    PyObject *features = PyObject_CallOneArg(PyTuple_GET_ITEM(lean, 0), observation);
    if (features == NULL) {
        fail(self, str_perception, observation);
        Py_DECREF(lean);
        return NULL;
    }
    PyObject *action = PyObject_CallOneArg(PyTuple_GET_ITEM(lean, 1), features);
    Py_DECREF(lean);
    if (action == NULL) {
        fail(self, str_planning, features);
        Py_DECREF(features);
        return NULL;
    }
    PyObject *acted = PyTuple_New(4);
    if (acted == NULL) {
        Py_DECREF(features);
        Py_DECREF(action);
        return NULL;
    }
    Py_INCREF(observation);
    PyTuple_SET_ITEM(acted, 0, observation);
    PyTuple_SET_ITEM(acted, 1, features);
    Py_INCREF(action);
    PyTuple_SET_ITEM(acted, 2, action);
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(acted, 3, Py_None);
    Py_XSETREF(self->acted, acted);
    return action;
}

static PyObject *
core_step(AgentCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *action;
    if (nargs == 1 && kwnames == NULL) {
        action = args[0];
    }
    else {
        action = one_argument(args, nargs, kwnames, str_action, "step");
        if (action == NULL) {
            return NULL;
        }
    }
    PyObject *lean = self->lean_step, *acted = self->acted;
    /* The lean path only right after the act() that planned this very action. */
    if (lean == NULL || !PyTuple_CheckExact(lean) || PyTuple_GET_SIZE(lean) != 2
        || acted == NULL || acted == self->stepped || !PyTuple_CheckExact(acted)
        || PyTuple_GET_SIZE(acted) != 4 || PyTuple_GET_ITEM(acted, 2) != action) {
        return call_slow(self, str_step_slow, action);
    }
    Py_INCREF(lean);
    Py_INCREF(acted);
    PyObject *result = PyObject_CallOneArg(PyTuple_GET_ITEM(lean, 0), action);
    if (result == NULL) {
        fail(self, str_execution, action);
        goto error;
    }
    if (!PyTuple_CheckExact(result) || PyTuple_GET_SIZE(result) != 2
        || !PyFloat_CheckExact(PyTuple_GET_ITEM(result, 1))) {
        /* Anything but (observation, float): checked, or refused, by the Python code. */
        PyObject *checked = call_slow(self, str_seed_result, result);
        Py_DECREF(result);
        if (checked == NULL) {
            goto error;
        }
        result = checked;
    }
    PyObject *observation = PyTuple_GET_ITEM(result, 0);
    PyObject *reward = PyTuple_GET_ITEM(result, 1);
    int training = self->training == NULL ? 1 : PyObject_IsTrue(self->training);
    if (training < 0) {
        goto error_result;
    }
    if (training) {
        PyObject *learn_args[] = {observation, reward};
        PyObject *learned = PyObject_Vectorcall(PyTuple_GET_ITEM(lean, 1), learn_args, 2, NULL);
        if (learned == NULL) {
            fail(self, str_learning, reward);
            goto error_result;
        }
        Py_DECREF(learned);
    }
    Py_DECREF(lean);
    Py_XSETREF(self->stepped, acted); /* takes the reference held above */
    Py_INCREF(result);
    Py_XSETREF(self->returned, result);
    self->step_index += 1;
    self->episode_return += PyFloat_AS_DOUBLE(reward);
    if (self->listeners != NULL) {
        int listening = PyObject_IsTrue(self->listeners);
        if (listening < 0) {
            Py_DECREF(result);
            return NULL;
        }
        if (listening) {
            PyObject *self_arg[] = {(PyObject *)self};
            PyObject *notified = PyObject_VectorcallMethod(
                str_notify, self_arg, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (notified == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            Py_DECREF(notified);
        }
    }
    return result;

error_result:
    Py_DECREF(result);
error:
    Py_DECREF(lean);
    Py_DECREF(acted);
    return NULL;
}

static int
core_traverse(AgentCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->lean_act);
    Py_VISIT(self->lean_step);
    Py_VISIT(self->acted);
    Py_VISIT(self->stepped);
    Py_VISIT(self->returned);
    Py_VISIT(self->training);
    Py_VISIT(self->listeners);
    return 0;
}

static int
core_clear(AgentCore *self)
{
    Py_CLEAR(self->lean_act);
    Py_CLEAR(self->lean_step);
    Py_CLEAR(self->acted);
    Py_CLEAR(self->stepped);
    Py_CLEAR(self->returned);
    Py_CLEAR(self->training);
    Py_CLEAR(self->listeners);
    return 0;
}

static void
core_dealloc(AgentCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef core_methods[] = {
    {"act", (PyCFunction)(void (*)(void))core_act, METH_FASTCALL | METH_KEYWORDS,
     "act($self, /, observation)\n--\n\n"
     "Perceive ``observation`` and plan: return the action to take."},
    {"step", (PyCFunction)(void (*)(void))core_step, METH_FASTCALL | METH_KEYWORDS,
     "step($self, /, action)\n--\n\n"
     "Execute ``action`` and learn from it; return ``(observation, reward)``.\n\n"
     "The rest of the transition (``terminated``, ``truncated``, ``info``) is in\n"
     ":attr:`last_record` and :attr:`done`."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_lean_act", T_OBJECT_EX, offsetof(AgentCore, lean_act), 0, NULL},
    {"_lean_step", T_OBJECT_EX, offsetof(AgentCore, lean_step), 0, NULL},
    {"_acted", T_OBJECT_EX, offsetof(AgentCore, acted), 0, NULL},
    {"_stepped", T_OBJECT_EX, offsetof(AgentCore, stepped), 0, NULL},
    {"_returned", T_OBJECT_EX, offsetof(AgentCore, returned), 0, NULL},
    {"_training", T_OBJECT_EX, offsetof(AgentCore, training), 0, NULL},
    {"listeners", T_OBJECT_EX, offsetof(AgentCore, listeners), 0,
     "Listeners called with the StepRecord of every step."},
    {"step_index", T_PYSSIZET, offsetof(AgentCore, step_index), 0,
     "Steps taken in the current episode."},
    {"episode_return", T_DOUBLE, offsetof(AgentCore, episode_return), 0,
     "The sum of the current episode's rewards."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject AgentCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "llmagentos._speedups.AgentCore",
    .tp_doc = PyDoc_STR("The Agent's lean act() and step(), compiled (see agent_core.py)."),
    .tp_basicsize = sizeof(AgentCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "llmagentos._speedups",
    .m_doc = "The Agent's lean act() and step() in C (see llmagentos.agent_core).",
    .m_size = -1,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (intern(&str_act_slow, "_act_slow") < 0 || intern(&str_step_slow, "_step_slow") < 0
        || intern(&str_seed_result, "_seed_result") < 0 || intern(&str_fail, "_fail") < 0
        || intern(&str_notify, "_notify") < 0 || intern(&str_perception, "perception") < 0
        || intern(&str_planning, "planning") < 0 || intern(&str_execution, "execution") < 0
        || intern(&str_learning, "learning") < 0
        || intern(&str_observation, "observation") < 0 || intern(&str_action, "action") < 0) {
        return NULL;
    }
    /* Made by object.__new__, which runs no code, as a Python class is: the service
     * state store makes agents that way, and checks that Agent.__new__ is object's. */
    AgentCoreType.tp_new = PyBaseObject_Type.tp_new;
    if (PyType_Ready(&AgentCoreType) < 0
        || PyDict_DelItemString(AgentCoreType.tp_dict, "__new__") < 0) {
        return NULL;
    }
    /* The fields as __slots__, the names pickle, copy and the service state store read
     * an instance's state by: each field is one pointer wide, as a slot is, so pickle's
     * size check (no hidden C state) holds as for PyAgentCore. */
    Py_BUILD_ASSERT(sizeof(double) == sizeof(PyObject *));
    Py_BUILD_ASSERT(sizeof(AgentCore) == sizeof(PyObject) + 9 * sizeof(PyObject *));
    PyObject *slots = Py_BuildValue(
        "(sssssssss)", "_lean_act", "_lean_step", "_acted", "_stepped", "_returned",
        "_training", "listeners", "step_index", "episode_return");
    if (slots == NULL || PyDict_SetItemString(AgentCoreType.tp_dict, "__slots__", slots) < 0) {
        Py_XDECREF(slots);
        return NULL;
    }
    Py_DECREF(slots);
    PyType_Modified(&AgentCoreType);
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&AgentCoreType);
    if (PyModule_AddObject(module, "AgentCore", (PyObject *)&AgentCoreType) < 0) {
        Py_DECREF(&AgentCoreType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
