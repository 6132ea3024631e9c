"""convzoo models: building blocks (models.layers), the generic Net, registry and complexity."""
