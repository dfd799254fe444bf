"""`.keras` saving of the ASB / MetaASB wrappers (`save`, `load_model`).

Keras saves a subclassed model as its constructor config plus the state of
its tracked objects. The wrapper's config holds the classifier (serialized),
its settings and the inner-loop weights as variable paths; its own variables
add the zap seed state, which Keras does not save for a SeedGenerator; and
loading re-compiles with the saved outer optimizer, which Keras skips for a
model that overrides `compile`.
"""

import keras

from zapkeras.errors import UsageError


def relative_path(model, variable):
    """`variable.path` without a leading "<model name>/"."""
    prefix = model.name + "/"
    path = variable.path
    return path[len(prefix) :] if path.startswith(prefix) else path


class Saving:
    """Mixin of `ASB`: get_config / from_config and the extra state."""

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.model.trainable_variables)

    def get_config(self):
        if not self._inner_saveable:
            raise UsageError(
                f"{type(self).__name__} with a predicate inner_variables "
                "cannot be saved (a function is not serializable); pass a "
                "list of the variables or of their paths instead."
            )
        trainable = self.model.trainable_variables
        inner = [
            relative_path(self.model, trainable[i]) for i in self._inner_index
        ]
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
            "inner_learning_rate": self.inner_learning_rate,
            "zap": self.zap,
            "zap_reset_bias": self.zap_reset_bias,
            "zap_reset_optimizer": self.zap_reset_optimizer,
            "inner_variables": None if self._inner_all else inner,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, **config)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["zap_seed"] = self._seed_generator.state

    def load_own_variables(self, store):
        self._seed_generator.state.assign(store["zap_seed"])
        super().load_own_variables(
            {k: store[k] for k in store.keys() if k != "zap_seed"}
        )
